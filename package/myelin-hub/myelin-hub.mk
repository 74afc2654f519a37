################################################################################
#
# myelin-hub
#
################################################################################

MYELIN_HUB_VERSION = $(MYELIN_RUST_VERSION)
MYELIN_HUB_SITE = $(MYELIN_RUST_SITE)
MYELIN_HUB_SITE_METHOD = local
MYELIN_HUB_SUBDIR = crates/myelin-hub
MYELIN_HUB_LICENSE = Apache-2.0
MYELIN_HUB_LICENSE_FILES = LICENSE
MYELIN_HUB_OVERRIDE_SRCDIR_RSYNC_EXCLUSIONS = $(MYELIN_RUST_RSYNC_EXCLUSIONS)
MYELIN_HUB_CARGO_ENV = $(MYELIN_CARGO_ENV)
MYELIN_HUB_PRE_BUILD_HOOKS += MYELIN_CARGO_FETCH

$(eval $(cargo-package))
