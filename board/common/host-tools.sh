# shellcheck shell=sh
# Sourced by post-build.sh and post-image.sh (POSIX sh): where the host tools they run come from.
#
# Under Buildroot (HOST_DIR set, as Buildroot sets it for post scripts) only $HOST_DIR/bin counts:
# the tools the build made from this tree (BR2_PACKAGE_HOST_MYELIN_FW / _KV, which every Myelin
# defconfig enables). Falling back to PATH there would silently use whatever myelin-fw the user
# installed, of another version. Outside Buildroot (the QEMU image builder, tests/boards) PATH
# is the source.

# Prints the path of host tool $1 (myelin-fw, myelin-kv), or stops naming what is missing.
host_tool() {
	if [ -n "${HOST_DIR:-}" ]; then
		if [ ! -x "$HOST_DIR/bin/$1" ]; then
			die "$1 is not in $HOST_DIR/bin: enable BR2_PACKAGE_HOST_$(echo "$1" | tr 'a-z-' 'A-Z_') (Myelin's defconfigs do)"
		fi
		echo "$HOST_DIR/bin/$1"
	else
		command -v "$1" 2>/dev/null || die "$1 (host) is not in PATH"
	fi
}
