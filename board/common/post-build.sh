#!/bin/sh
# Buildroot post-build step for every Myelin board, run on the target directory before the root
# filesystem image is made. Buildroot calls it as
#   board/common/post-build.sh <TARGET_DIR> <board>
# (the board comes from BR2_ROOTFS_POST_SCRIPT_ARGS). The QEMU test image builder calls it the
# same way. Settings come from Buildroot's .config (BR2_CONFIG) when there is one, else from the
# environment variables of the same meaning (MYELIN_FW_PUBLIC_KEYS, MYELIN_FW_RELEASE,
# SOURCE_DATE_EPOCH).
#
# What it does, and why:
# - removes SysV init scripts and tables: myelin-init is PID 1 and starts everything itself;
# - creates the mount points myelin-init needs, since the root filesystem is read-only squashfs;
# - records the build time (myelin-init never lets the clock run behind it) and release facts;
# - locks root's password (no local root; see board/common/busybox.fragment);
# - installs the public keys that firmware updates must be signed with: a release build
#   (BR2_MYELIN_FW_RELEASE) without one fails; any other build without one is a development
#   image, which it says loudly and marks in /etc/myelin/development for myelin-init to say at
#   every boot;
# - writes os-release and the login banner (release-info.sh);
# - installs the authorized SSH keys and keeps dropbear's state on /data (ssh-keys.sh);
# - puts the board's resource-less fwup tasks (validate, revert, status, ...) into
#   /usr/share/myelin/ops.fw for myelin-update, built with the host myelin-fw.
set -eu

die() { echo "post-build: $*" >&2; exit 1; }

[ $# -ge 2 ] || die "usage: $0 <TARGET_DIR> <board>"
TARGET_DIR=$1
BOARD=$2
TREE=${BR2_EXTERNAL_MYELIN_PATH:-$(cd "$(dirname "$0")/../.." && pwd)}
# shellcheck source=host-tools.sh
. "$TREE/board/common/host-tools.sh"
BOARD_DIR=$TREE/board/$BOARD
[ -d "$TARGET_DIR" ] || die "target directory $TARGET_DIR does not exist"
[ -f "$BOARD_DIR/fwup.conf" ] || die "unknown board '$BOARD' (no $BOARD_DIR/fwup.conf)"

# Prints the value of a BR2_ option from Buildroot's .config, without quotes; empty if unset.
br2_value() {
	[ -n "${BR2_CONFIG:-}" ] && [ -f "$BR2_CONFIG" ] || return 0
	sed -n "s/^$1=\"\{0,1\}\([^\"]*\)\"\{0,1\}$/\1/p" "$BR2_CONFIG"
}

# SysV init leftovers from packages (dropbear, dbus) and the skeleton.
rm -rf "$TARGET_DIR/etc/init.d" "$TARGET_DIR/etc/inittab" "$TARGET_DIR/etc/fstab"

# Mount points: the root filesystem is read-only at run time.
for dir in data dev proc sys tmp run mnt; do
	mkdir -p "$TARGET_DIR/$dir"
done

# /var as Buildroot's SysV skeleton lays it out, which the skeleton for BR2_INIT_NONE lacks: links
# into the tmpfs mounts, since the root filesystem is read-only. /var/run is where the D-Bus
# specification puts the system bus (zbus's default without DBUS_SYSTEM_BUS_ADDRESS, e.g. in an
# SSH session), /var/lock holds fw_printenv's lock; myelin-init creates /run/lock at boot.
mkdir -p "$TARGET_DIR/var/lib"
for link in run:../run lock:../run/lock log:../tmp tmp:../tmp cache:../tmp spool:../tmp; do
	name=${link%%:*}
	if [ ! -L "$TARGET_DIR/var/$name" ]; then
		rm -rf "${TARGET_DIR:?}/var/${name:?}"
		ln -s "${link#*:}" "$TARGET_DIR/var/$name"
	fi
done

# No local root. Buildroot already writes root:* to /etc/shadow when BR2_TARGET_ENABLE_ROOT_LOGIN
# is unset, as every defconfig has it (scripts/check-external refuses one that is not); this
# catches a configuration that turned it back on, and a target that lacks the skeleton's
# /etc/shadow. "*" and not "!": dropbear refuses every login to an account whose password starts
# with "!", keys included, and keys are how root gets in (dropbear -s refuses passwords).
shadow=$TARGET_DIR/etc/shadow
if [ -f "$shadow" ] && grep -q '^root:' "$shadow"; then
	if ! grep -q '^root:\*:' "$shadow"; then
		echo "post-build: warning: root had a usable password in /etc/shadow (BR2_TARGET_ENABLE_ROOT_LOGIN?); locking it" >&2
		sed -i 's/^root:[^:]*:/root:*:/' "$shadow"
	fi
else
	echo 'root:*:::::::' >> "$shadow"
fi
chmod 0600 "$shadow"

# The clock floor: a device without an RTC boots in 1970, which breaks TLS and makes logs lie.
build_time=${SOURCE_DATE_EPOCH:-$(date +%s)}
mkdir -p "$TARGET_DIR/etc/myelin"
echo "$build_time" > "$TARGET_DIR/etc/myelin/build-time"
{
	echo "MYELIN_BOARD=$BOARD"
	echo "MYELIN_BUILD_TIME=$build_time"
	echo "MYELIN_VERSION=${MYELIN_FW_VERSION:-$(br2_value BR2_MYELIN_FW_VERSION)}"
} > "$TARGET_DIR/etc/myelin/release"

# os-release and the login banner; SSH keys and dropbear's state.
"$TREE/board/common/release-info.sh" "$TARGET_DIR" "$BOARD" \
	"$(sed -n 's/^MYELIN_VERSION=//p' "$TARGET_DIR/etc/myelin/release")" \
	"${MYELIN_FW_PRODUCT:-$(br2_value BR2_MYELIN_FW_PRODUCT)}"
"$TREE/board/common/ssh-keys.sh" "$TARGET_DIR"

# Firmware signing keys. The directory is always there, so that the device can tell "no keys
# installed" (a development image, below) from a damaged root filesystem.
keys=${MYELIN_FW_PUBLIC_KEYS:-$(br2_value BR2_MYELIN_FW_PUBLIC_KEYS)}
release=${MYELIN_FW_RELEASE:-$(br2_value BR2_MYELIN_FW_RELEASE)}
case "$release" in
	y) release=1 ;;
	''|n) release=0 ;;
	*) die "MYELIN_FW_RELEASE/BR2_MYELIN_FW_RELEASE is '$release'; it must be y or empty" ;;
esac
rm -rf "$TARGET_DIR/etc/myelin/fw-keys" "$TARGET_DIR/etc/myelin/development"
mkdir -p "$TARGET_DIR/etc/myelin/fw-keys"
n=0
for key in $keys; do
	[ -f "$key" ] || die "firmware public key $key does not exist"
	n=$((n + 1))
	cp "$key" "$TARGET_DIR/etc/myelin/fw-keys/$n-$(basename "$key")"
done
if [ "$n" -eq 0 ]; then
	[ "$release" -eq 0 ] || die "BR2_MYELIN_FW_RELEASE is set (a release build) but BR2_MYELIN_FW_PUBLIC_KEYS names no key: a release image must accept only signed updates"
	# A development image: loud at build, marked for myelin-init to say at every boot.
	cat >&2 <<-'WARN'
	post-build: ********************************************************************
	post-build: WARNING: DEVELOPMENT IMAGE. No firmware public key
	post-build: (BR2_MYELIN_FW_PUBLIC_KEYS is empty): this device will install
	post-build: UNSIGNED updates from anyone who can reach it. Set the key, and
	post-build: BR2_MYELIN_FW_RELEASE to make a missing key a build error.
	post-build: ********************************************************************
	WARN
	echo "built without firmware public keys: updates are not signature-checked" \
		> "$TARGET_DIR/etc/myelin/development"
	echo "MYELIN_UPDATES=unsigned" >> "$TARGET_DIR/etc/myelin/release"
else
	echo "MYELIN_UPDATES=signed" >> "$TARGET_DIR/etc/myelin/release"
fi

# The ops tasks, for myelin-update on the device.
FW_TOOL=$(host_tool myelin-fw)
mkdir -p "$TARGET_DIR/usr/share/myelin"
MYELIN_BOARD_DIR=$BOARD_DIR "$FW_TOOL" create --ops -f "$BOARD_DIR/fwup.conf" \
	-o "$TARGET_DIR/usr/share/myelin/ops.fw"
