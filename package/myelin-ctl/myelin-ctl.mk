################################################################################
#
# myelin-ctl
#
################################################################################

MYELIN_CTL_VERSION = $(MYELIN_RUST_VERSION)
MYELIN_CTL_SITE = $(MYELIN_RUST_SITE)
MYELIN_CTL_SITE_METHOD = local
MYELIN_CTL_SUBDIR = crates/myelin-ctl
MYELIN_CTL_LICENSE = Apache-2.0
MYELIN_CTL_LICENSE_FILES = LICENSE
MYELIN_CTL_OVERRIDE_SRCDIR_RSYNC_EXCLUSIONS = $(MYELIN_RUST_RSYNC_EXCLUSIONS)
MYELIN_CTL_CARGO_ENV = $(MYELIN_CARGO_ENV)
MYELIN_CTL_PRE_BUILD_HOOKS += MYELIN_CARGO_FETCH

$(eval $(cargo-package))
