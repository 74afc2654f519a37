################################################################################
#
# sensor-node
#
################################################################################

# The crate is a member of Myelin's Cargo workspace (examples/sensor-node/Cargo.toml names
# ../../rust as its workspace), so the source handed to cargo is the Myelin tree: the crate
# and the workspace's Cargo.lock. A product in its own repository sets SITE to its own tree.
SENSOR_NODE_VERSION = 0.1.0
SENSOR_NODE_SITE = $(BR2_EXTERNAL_MYELIN_PATH)
SENSOR_NODE_SITE_METHOD = local
SENSOR_NODE_SUBDIR = examples/sensor-node
SENSOR_NODE_LICENSE = Apache-2.0
SENSOR_NODE_LICENSE_FILES = LICENSE
SENSOR_NODE_OVERRIDE_SRCDIR_RSYNC_EXCLUSIONS = \
	--exclude /output --exclude /rust/target --exclude /rust/fuzz/target
SENSOR_NODE_CARGO_ENV = $(MYELIN_CARGO_ENV)
SENSOR_NODE_PRE_BUILD_HOOKS += MYELIN_CARGO_FETCH

$(eval $(cargo-package))
