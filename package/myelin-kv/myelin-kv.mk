################################################################################
#
# myelin-kv
#
################################################################################

MYELIN_KV_VERSION = $(MYELIN_RUST_VERSION)
MYELIN_KV_SITE = $(MYELIN_RUST_SITE)
MYELIN_KV_SITE_METHOD = local
MYELIN_KV_SUBDIR = crates/myelin-kv
MYELIN_KV_LICENSE = Apache-2.0
MYELIN_KV_LICENSE_FILES = LICENSE
MYELIN_KV_OVERRIDE_SRCDIR_RSYNC_EXCLUSIONS = $(MYELIN_RUST_RSYNC_EXCLUSIONS)
MYELIN_KV_CARGO_ENV = $(MYELIN_CARGO_ENV)
MYELIN_KV_PRE_BUILD_HOOKS += MYELIN_CARGO_FETCH
HOST_MYELIN_KV_CARGO_ENV = $(MYELIN_HOST_CARGO_ENV)
# Not inherited from the target package: without it, rust/target is copied too.
HOST_MYELIN_KV_OVERRIDE_SRCDIR_RSYNC_EXCLUSIONS = $(MYELIN_RUST_RSYNC_EXCLUSIONS)
HOST_MYELIN_KV_PRE_BUILD_HOOKS += MYELIN_CARGO_FETCH

define MYELIN_KV_INSTALL_FW_ENV_LINKS
	ln -sf fw_env $(TARGET_DIR)/usr/bin/fw_printenv
	ln -sf fw_env $(TARGET_DIR)/usr/bin/fw_setenv
endef
MYELIN_KV_POST_INSTALL_TARGET_HOOKS += MYELIN_KV_INSTALL_FW_ENV_LINKS

$(eval $(cargo-package))
$(eval $(host-cargo-package))
