# shellcheck shell=bash
# Shared helpers for Myelin's bash scripts: repository paths, logging and prerequisites.

MYELIN_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
export MYELIN_ROOT
MYELIN_CACHE=${MYELIN_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/myelin}
export MYELIN_CACHE

# Prints a section heading on stderr.
say() { printf '\n=== %s\n' "$*" >&2; }

# Prints an error and exits.
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# Installs the Debian packages listed in scripts/deps/apt.txt that are not installed yet.
ensure_apt_packages() {
	local missing=() pkg
	while read -r pkg; do
		case "$pkg" in ''|'#'*) continue ;; esac
		dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' \
			|| missing+=("$pkg")
	done < "$MYELIN_ROOT/scripts/deps/apt.txt"
	[ ${#missing[@]} -eq 0 ] && return 0
	say "installing ${missing[*]}"
	local sudo=
	[ "$(id -u)" -eq 0 ] || sudo=sudo
	$sudo apt-get update -q
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
}

# Installs a cargo tool at a pinned version unless that version is already installed.
ensure_cargo_tool() {
	local crate=$1 version=$2 bin=${3:-$1}
	if command -v "$bin" >/dev/null 2>&1 && cargo install --list | grep -q "^$crate v$version:"; then
		return 0
	fi
	say "installing $crate $version"
	cargo install --locked --quiet "$crate" --version "$version"
}

# Linker (a Debian cross gcc) for a Rust target.
cross_linker() {
	case "$1" in
		aarch64-*) echo aarch64-linux-gnu-gcc ;;
		arm*-gnueabihf) echo arm-linux-gnueabihf-gcc ;;
		*) die "no cross linker for $1" ;;
	esac
}

# Cargo for targets the rustup toolchain lacks: Debian's Rust builds std from source.
# Usage: cross_cargo <target> <cargo subcommand and args>; output lands in rust/target/cross.
cross_cargo() {
	local target=$1
	shift
	local upper
	upper=$(echo "$target" | tr 'a-z-' 'A-Z_')
	# No debug info and no incremental state: nobody steps through these builds in a debugger
	# and each is built once, so both would only cost compile and link time.
	env RUSTC_BOOTSTRAP=1 RUSTC=/usr/bin/rustc RUSTDOC=/usr/bin/rustdoc \
		CARGO_PROFILE_DEV_DEBUG=0 CARGO_INCREMENTAL=0 \
		CARGO_TARGET_DIR="$MYELIN_ROOT/rust/target/cross" \
		"CARGO_TARGET_${upper}_LINKER=$(cross_linker "$target")" \
		"CARGO_TARGET_${upper}_RUNNER=$(cross_qemu "$target") -L /usr/$(cross_sysroot "$target")" \
		/usr/bin/cargo "$@" -Z build-std=std,panic_abort --target "$target"
}

# qemu-user emulator that runs a target's binaries on this machine.
cross_qemu() {
	case "$1" in
		aarch64-*) echo qemu-aarch64-static ;;
		arm*) echo qemu-arm-static ;;
	esac
}

# Debian's sysroot (under /usr) with the target's C library.
cross_sysroot() {
	case "$1" in
		aarch64-*) echo aarch64-linux-gnu ;;
		arm*-gnueabihf) echo arm-linux-gnueabihf ;;
	esac
}
