################################################################################
#
# myelin-uevent
#
################################################################################

MYELIN_UEVENT_VERSION = $(MYELIN_RUST_VERSION)
MYELIN_UEVENT_SITE = $(MYELIN_RUST_SITE)
MYELIN_UEVENT_SITE_METHOD = local
MYELIN_UEVENT_SUBDIR = crates/myelin-uevent
MYELIN_UEVENT_LICENSE = Apache-2.0
MYELIN_UEVENT_LICENSE_FILES = LICENSE
MYELIN_UEVENT_OVERRIDE_SRCDIR_RSYNC_EXCLUSIONS = $(MYELIN_RUST_RSYNC_EXCLUSIONS)
MYELIN_UEVENT_CARGO_ENV = $(MYELIN_CARGO_ENV)
MYELIN_UEVENT_PRE_BUILD_HOOKS += MYELIN_CARGO_FETCH

$(eval $(cargo-package))
