################################################################################
#
# myelin-init
#
################################################################################

MYELIN_INIT_VERSION = $(MYELIN_RUST_VERSION)
MYELIN_INIT_SITE = $(MYELIN_RUST_SITE)
MYELIN_INIT_SITE_METHOD = local
MYELIN_INIT_SUBDIR = crates/myelin-init
MYELIN_INIT_LICENSE = Apache-2.0
MYELIN_INIT_LICENSE_FILES = LICENSE
MYELIN_INIT_OVERRIDE_SRCDIR_RSYNC_EXCLUSIONS = $(MYELIN_RUST_RSYNC_EXCLUSIONS)
MYELIN_INIT_CARGO_ENV = $(MYELIN_CARGO_ENV)
MYELIN_INIT_PRE_BUILD_HOOKS += MYELIN_CARGO_FETCH

define MYELIN_INIT_INSTALL_INIT_SYMLINK
	mkdir -p $(TARGET_DIR)/sbin
	ln -sf /usr/bin/myelin-init $(TARGET_DIR)/sbin/init
endef
MYELIN_INIT_POST_INSTALL_TARGET_HOOKS += MYELIN_INIT_INSTALL_INIT_SYMLINK

$(eval $(cargo-package))
