################################################################################
#
# myelin-update
#
################################################################################

MYELIN_UPDATE_VERSION = $(MYELIN_RUST_VERSION)
MYELIN_UPDATE_SITE = $(MYELIN_RUST_SITE)
MYELIN_UPDATE_SITE_METHOD = local
MYELIN_UPDATE_SUBDIR = crates/myelin-update
MYELIN_UPDATE_LICENSE = Apache-2.0
MYELIN_UPDATE_LICENSE_FILES = LICENSE
MYELIN_UPDATE_OVERRIDE_SRCDIR_RSYNC_EXCLUSIONS = $(MYELIN_RUST_RSYNC_EXCLUSIONS)
MYELIN_UPDATE_CARGO_ENV = $(MYELIN_CARGO_ENV)
MYELIN_UPDATE_PRE_BUILD_HOOKS += MYELIN_CARGO_FETCH

$(eval $(cargo-package))
