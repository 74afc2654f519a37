################################################################################
#
# Myelin: common definitions for the Rust packages, then every package .mk
#
################################################################################

# All Myelin programs live in one Cargo workspace. Each package builds its own
# crate (SUBDIR), but they share one cargo target directory per side (target,
# host) so that the dependency graph is compiled once, not once per package.
MYELIN_RUST_SITE = $(BR2_EXTERNAL_MYELIN_PATH)/rust
MYELIN_RUST_VERSION = 0.1.0
MYELIN_RUST_RSYNC_EXCLUSIONS = --exclude /target --exclude fuzz/target

# Buildroot's cargo infrastructure passes its own release profile (opt-level from
# BR2_OPTIMIZE_*, no LTO, 16 codegen units), which would replace the workspace's.
# The packages' CARGO_ENV comes last on cargo's command line, so this sets back
# the [profile.release] of rust/Cargo.toml: the binaries a user gets are the
# ones the tests and benchmarks measure. tests/tree checks the two agree.
MYELIN_CARGO_PROFILE_ENV = \
	CARGO_PROFILE_RELEASE_OPT_LEVEL=s \
	CARGO_PROFILE_RELEASE_LTO=true \
	CARGO_PROFILE_RELEASE_CODEGEN_UNITS=1 \
	CARGO_PROFILE_RELEASE_PANIC=abort \
	CARGO_PROFILE_RELEASE_STRIP=true
MYELIN_CARGO_ENV = \
	CARGO_TARGET_DIR=$(BUILD_DIR)/myelin-cargo-target \
	$(MYELIN_CARGO_PROFILE_ENV)
MYELIN_HOST_CARGO_ENV = \
	CARGO_TARGET_DIR=$(BUILD_DIR)/myelin-cargo-host-target \
	$(MYELIN_CARGO_PROFILE_ENV)

# Buildroot does not vendor crates for local-source cargo packages (their
# download step is empty) and builds with --offline. Fetch every crate of the
# workspace's Cargo.lock into Buildroot's CARGO_HOME: as part of 'make source'
# (so that a later build works without network), and before each build (a
# no-op when the crates are already there).
define MYELIN_CARGO_FETCH
	cd $(MYELIN_RUST_SITE) && \
	$(HOST_MAKE_ENV) CARGO_HOME=$(BR_CARGO_HOME) \
		cargo fetch --locked --offline >/dev/null 2>&1 || \
	$(HOST_MAKE_ENV) CARGO_HOME=$(BR_CARGO_HOME) \
		cargo fetch --locked --manifest-path $(MYELIN_RUST_SITE)/Cargo.toml
endef

ifeq ($(BR2_PACKAGE_HOST_RUSTC),y)
.PHONY: myelin-cargo-fetch
myelin-cargo-fetch: host-rustc
	$(MYELIN_CARGO_FETCH)

source: myelin-cargo-fetch
endif

include $(sort $(wildcard $(BR2_EXTERNAL_MYELIN_PATH)/package/*/*.mk))
