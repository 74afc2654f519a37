#!/bin/sh
# Buildroot post-image step for every Myelin board: turns Buildroot's images into the two files a
# release engineer ships, from the board's fwup.conf:
#   <BINARIES_DIR>/<board>.fw    the (signed) update, also what `complete` programs a card from
#   <BINARIES_DIR>/<board>.img   a complete SD card / disk image
# Buildroot calls it as
#   board/common/post-image.sh <BINARIES_DIR> <board>
# (the board comes from BR2_ROOTFS_POST_SCRIPT_ARGS); the QEMU test image builder calls it the same
# way. myelin-fw and myelin-kv come from $HOST_DIR/bin under Buildroot, from PATH otherwise
# (host-tools.sh); mkfs.vfat and mcopy (for the Raspberry Pi boot partitions) from PATH.
#
# Settings come from Buildroot's .config (BR2_MYELIN_FW_*) when there is one; the environment
# variables MYELIN_FW_PRODUCT, MYELIN_FW_DESCRIPTION, MYELIN_FW_VERSION, MYELIN_FW_AUTHOR,
# MYELIN_FW_VCS_IDENTIFIER, MYELIN_FW_MISC, MYELIN_FW_PRIVATE_KEY and MYELIN_FW_RELEASE win over it.
set -eu

die() { echo "post-image: $*" >&2; exit 1; }

[ $# -ge 2 ] || die "usage: $0 <BINARIES_DIR> <board>"
BINARIES_DIR=$(cd "$1" && pwd)
BOARD=$2
TREE=${BR2_EXTERNAL_MYELIN_PATH:-$(cd "$(dirname "$0")/../.." && pwd)}
BOARD_DIR=$TREE/board/$BOARD
FWUP_CONF=$BOARD_DIR/fwup.conf
[ -f "$FWUP_CONF" ] || die "unknown board '$BOARD' (no $FWUP_CONF)"
# shellcheck source=host-tools.sh
. "$TREE/board/common/host-tools.sh"
FW_TOOL=$(host_tool myelin-fw)
KV_TOOL=$(host_tool myelin-kv)

# Prints the value of a BR2_ option from Buildroot's .config, without quotes; empty if unset.
br2_value() {
	[ -n "${BR2_CONFIG:-}" ] && [ -f "$BR2_CONFIG" ] || return 0
	sed -n "s/^$1=\"\{0,1\}\([^\"]*\)\"\{0,1\}$/\1/p" "$BR2_CONFIG"
}

# Prints the value of a define(NAME, value) from a fwup.conf file.
fwup_define() {
	sed -n "s/^define($2, *\([0-9]*\))/\1/p" "$1"
}

# The default U-Boot environment: the text file in board/<board>/, at the size and layout that
# the board's fw_env.config declares (two lines = redundant copies).
make_uboot_env() {
	fw_env=$BOARD_DIR/rootfs_overlay/etc/fw_env.config
	[ -f "$fw_env" ] || die "$fw_env is missing"
	size=$(awk '!/^[[:space:]]*(#|$)/ { print $3; exit }' "$fw_env")
	copies=$(awk '!/^[[:space:]]*(#|$)/ { n++ } END { print n + 0 }' "$fw_env")
	[ -n "$size" ] || die "$fw_env declares no environment"
	redundant=
	[ "$copies" -eq 2 ] && redundant=-r
	"$KV_TOOL" mkenvimage $redundant -s "$size" -o "$BINARIES_DIR/uboot-env.img" \
		"$BOARD_DIR/uboot-env.txt"
}

# A FAT image of exactly <blocks> 512-byte blocks, with reproducible metadata.
make_vfat() {
	image=$1 blocks=$2 label=$3
	rm -f "$image"
	truncate -s $((blocks * 512)) "$image"
	mkfs.vfat -n "$label" --invariant "$image" >/dev/null
}

# Copies files into the root of a FAT image.
vfat_add() {
	image=$1
	shift
	MTOOLS_SKIP_CHECK=1 mcopy -m -o -i "$image" "$@" ::
}

# Raspberry Pi: the AUTOBOOT partition (tryboot selection, and bootcode.bin on the boards whose
# ROM needs it) and one boot partition image that both slots get (firmware, kernel, device
# trees, config.txt and the overlays config.txt names). cmdline.txt differs per slot and is
# written by fwup.conf.
make_rpi_partitions() {
	conf=$TREE/board/common/fwup-rpi.conf
	fw=$BINARIES_DIR/rpi-firmware
	[ -d "$fw" ] || die "$fw is missing (rpi-firmware package)"
	work=$(mktemp -d)
	trap 'rm -rf "$work"' EXIT

	# The same files fwup-rpi.conf installs when it migrates a Nerves card (which lacks them).
	cp "$TREE/board/common/autoboot-a.txt" "$TREE/board/common/autoboot-b.txt" "$work/"
	cp "$work/autoboot-a.txt" "$work/autoboot.txt"
	make_vfat "$BINARIES_DIR/autoboot.vfat" "$(fwup_define "$conf" AUTOBOOT_PART_COUNT)" AUTOBOOT
	vfat_add "$BINARIES_DIR/autoboot.vfat" "$work/autoboot.txt" "$work/autoboot-a.txt" \
		"$work/autoboot-b.txt"
	[ -f "$fw/bootcode.bin" ] && vfat_add "$BINARIES_DIR/autoboot.vfat" "$fw/bootcode.bin"

	make_vfat "$BINARIES_DIR/boot.vfat" "$(fwup_define "$conf" BOOT_A_PART_COUNT)" BOOT
	kernel=$(sed -n 's/^kernel=//p' "$BOARD_DIR/config.txt")
	[ -f "$BINARIES_DIR/$kernel" ] || die "config.txt boots $kernel, which is not in $BINARIES_DIR"
	set -- "$BOARD_DIR/config.txt" "$BINARIES_DIR/$kernel"
	for f in "$fw"/start*.elf "$fw"/fixup*.dat "$BINARIES_DIR"/*.dtb; do
		[ -f "$f" ] && set -- "$@" "$f"
	done
	vfat_add "$BINARIES_DIR/boot.vfat" "$@"
	overlays=$(sed -n 's/^dtoverlay=\([^,:]*\).*/\1/p' "$BOARD_DIR/config.txt")
	if [ -n "$overlays" ]; then
		MTOOLS_SKIP_CHECK=1 mmd -i "$BINARIES_DIR/boot.vfat" ::overlays
		for o in $overlays; do
			[ -f "$fw/overlays/$o.dtbo" ] || die "config.txt uses overlay $o, which rpi-firmware did not install"
			MTOOLS_SKIP_CHECK=1 mcopy -m -o -i "$BINARIES_DIR/boot.vfat" "$fw/overlays/$o.dtbo" ::overlays/
		done
	fi
	rm -rf "$work"
	trap - EXIT
}

# x86_64: GRUB's first stage comes from the grub2 build tree (Buildroot only installs the core
# image to BINARIES_DIR).
copy_grub_boot_img() {
	[ -f "$BINARIES_DIR/boot.img" ] && return 0
	for f in "${BUILD_DIR:-/nonexistent}"/grub2-*/build-i386-pc/grub-core/boot.img; do
		if [ -f "$f" ]; then
			cp "$f" "$BINARIES_DIR/boot.img"
			return 0
		fi
	done
	die "GRUB's boot.img is neither in $BINARIES_DIR nor in the grub2 build directory"
}

make_uboot_env
case "$BOARD" in
	rpi*) make_rpi_partitions ;;
	x86_64) copy_grub_boot_img ;;
esac

# Firmware metadata and signing key: the environment wins over Buildroot's .config; an empty
# setting is left out so that fwup.conf's own default applies.
setting() {
	eval "env_value=\${$1:-}"
	if [ -n "$env_value" ]; then echo "$env_value"; else br2_value "BR2_$1"; fi
}
for name in MYELIN_FW_PRODUCT MYELIN_FW_DESCRIPTION MYELIN_FW_VERSION MYELIN_FW_AUTHOR \
	MYELIN_FW_VCS_IDENTIFIER MYELIN_FW_MISC; do
	value=$(setting "$name")
	if [ "$name" = MYELIN_FW_VCS_IDENTIFIER ] && [ -z "$value" ]; then
		value=$(git -C "$TREE" describe --always --dirty 2>/dev/null || true)
	fi
	if [ -n "$value" ]; then
		export "$name=$value"
	else
		unset "$name"
	fi
done
private_key=$(setting MYELIN_FW_PRIVATE_KEY)
MYELIN_BOARD_DIR=$BOARD_DIR
export BINARIES_DIR MYELIN_BOARD_DIR

fw=$BINARIES_DIR/$BOARD.fw
img=$BINARIES_DIR/$BOARD.img
rm -f "$fw" "$img"
if [ -n "$private_key" ]; then
	[ -f "$private_key" ] || die "firmware signing key $private_key does not exist"
	"$FW_TOOL" create -f "$FWUP_CONF" -o "$fw" -s "$private_key"
else
	# A release build never ships an unsigned .fw (post-build refuses it a missing public key).
	case "$(setting MYELIN_FW_RELEASE)" in
		y) die "BR2_MYELIN_FW_RELEASE is set (a release build) but BR2_MYELIN_FW_PRIVATE_KEY is empty: $BOARD.fw would be unsigned" ;;
	esac
	echo "post-image: warning: no signing key (BR2_MYELIN_FW_PRIVATE_KEY); $BOARD.fw is unsigned" >&2
	"$FW_TOOL" create -f "$FWUP_CONF" -o "$fw"
fi
: > "$img"
"$FW_TOOL" apply -q -d "$img" -i "$fw" -t complete
echo "post-image: wrote $fw ($(wc -c < "$fw") bytes) and $img"
