################################################################################
#
# myelin-net
#
################################################################################

MYELIN_NET_VERSION = $(MYELIN_RUST_VERSION)
MYELIN_NET_SITE = $(MYELIN_RUST_SITE)
MYELIN_NET_SITE_METHOD = local
MYELIN_NET_SUBDIR = crates/myelin-net
MYELIN_NET_LICENSE = Apache-2.0
MYELIN_NET_LICENSE_FILES = LICENSE
MYELIN_NET_OVERRIDE_SRCDIR_RSYNC_EXCLUSIONS = $(MYELIN_RUST_RSYNC_EXCLUSIONS)
MYELIN_NET_CARGO_ENV = $(MYELIN_CARGO_ENV)
MYELIN_NET_PRE_BUILD_HOOKS += MYELIN_CARGO_FETCH

$(eval $(cargo-package))
