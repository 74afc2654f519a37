#!/bin/sh
# What a Myelin device says about itself, written at build time (called by post-build.sh):
#   board/common/release-info.sh <TARGET_DIR> <board> <version> <product>
#
# - /usr/lib/os-release (and /etc/os-release leading to it), as systemd's os-release(5) lays it
#   out, replacing Buildroot's: tools and people asking "what is this?" get Myelin, its version
#   and board.
# - /etc/motd: the login banner, saying what runs and where to get help. dropbear prints it on
#   SSH logins; /etc/profile.d/myelin.sh prints it on the console.
set -eu

[ $# -eq 4 ] || { echo "usage: $0 <TARGET_DIR> <board> <version> <product>" >&2; exit 1; }
TARGET_DIR=$1 BOARD=$2 VERSION=$3 PRODUCT=$4

# os-release values are shell-quoted strings.
quote() { printf '"%s"' "$(printf '%s' "$1" | sed 's/[\\"$`]/\\&/g')"; }

mkdir -p "$TARGET_DIR/usr/lib" "$TARGET_DIR/etc"
{
	echo "NAME=Myelin"
	echo "ID=myelin"
	echo "VERSION=$(quote "$VERSION ($BOARD)")"
	echo "VERSION_ID=$(quote "$VERSION")"
	echo "PRETTY_NAME=$(quote "$PRODUCT $VERSION (Myelin, $BOARD)")"
	echo "VARIANT=$(quote "$BOARD")"
	echo "VARIANT_ID=$(quote "$BOARD")"
	echo "IMAGE_ID=$(quote "$PRODUCT")"
	echo "IMAGE_VERSION=$(quote "$VERSION")"
} > "$TARGET_DIR/usr/lib/os-release"
rm -f "$TARGET_DIR/etc/os-release"
ln -s ../usr/lib/os-release "$TARGET_DIR/etc/os-release"

cat > "$TARGET_DIR/etc/motd" <<MOTD

  $PRODUCT $VERSION on Myelin ($BOARD)

  myelin-init (PID 1) supervises every service; the root filesystem is read-only, /data keeps.
    myelinctl status       services, their state and restarts
    myelinctl log [NAME]   recent logs (all, or one service's)
    myelinctl fw status    running firmware and slot
    myelinctl --help       everything else

MOTD
