################################################################################
#
# myelin-time
#
################################################################################

MYELIN_TIME_VERSION = $(MYELIN_RUST_VERSION)
MYELIN_TIME_SITE = $(MYELIN_RUST_SITE)
MYELIN_TIME_SITE_METHOD = local
MYELIN_TIME_SUBDIR = crates/myelin-time
MYELIN_TIME_LICENSE = Apache-2.0
MYELIN_TIME_LICENSE_FILES = LICENSE
MYELIN_TIME_OVERRIDE_SRCDIR_RSYNC_EXCLUSIONS = $(MYELIN_RUST_RSYNC_EXCLUSIONS)
MYELIN_TIME_CARGO_ENV = $(MYELIN_CARGO_ENV)
MYELIN_TIME_PRE_BUILD_HOOKS += MYELIN_CARGO_FETCH

$(eval $(cargo-package))
