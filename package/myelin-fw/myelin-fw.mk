################################################################################
#
# myelin-fw
#
################################################################################

MYELIN_FW_VERSION = $(MYELIN_RUST_VERSION)
MYELIN_FW_SITE = $(MYELIN_RUST_SITE)
MYELIN_FW_SITE_METHOD = local
MYELIN_FW_SUBDIR = crates/myelin-fw
MYELIN_FW_LICENSE = Apache-2.0
MYELIN_FW_LICENSE_FILES = LICENSE
MYELIN_FW_OVERRIDE_SRCDIR_RSYNC_EXCLUSIONS = $(MYELIN_RUST_RSYNC_EXCLUSIONS)
MYELIN_FW_CARGO_ENV = $(MYELIN_CARGO_ENV)
MYELIN_FW_PRE_BUILD_HOOKS += MYELIN_CARGO_FETCH
HOST_MYELIN_FW_CARGO_ENV = $(MYELIN_HOST_CARGO_ENV)
# Not inherited from the target package: without it, rust/target is copied too.
HOST_MYELIN_FW_OVERRIDE_SRCDIR_RSYNC_EXCLUSIONS = $(MYELIN_RUST_RSYNC_EXCLUSIONS)
HOST_MYELIN_FW_PRE_BUILD_HOOKS += MYELIN_CARGO_FETCH

$(eval $(cargo-package))
$(eval $(host-cargo-package))
