#!/bin/sh
# Buildroot fakeroot step for every Myelin board (BR2_ROOTFS_POST_FAKEROOT_SCRIPT), run inside
# fakeroot on the copy of the target directory the root filesystem image is made from, after
# Buildroot has applied its permission tables and before the image is made. Buildroot calls it as
#   board/common/post-fakeroot.sh <TARGET_DIR> <board>
#
# No local root: it clears every setuid and setgid bit, and fails if one is left.
#
# Why here and not in post-build.sh: the bits come from the packages' permission tables
# (busybox.mk installs /bin/busybox 4755 unconditionally, dbus.mk its activation helper 4750),
# which makedevs applies in this same fakeroot session, after every post-build script has run.
# BusyBox is built without CONFIG_FEATURE_SUID (board/common/busybox.fragment), and a setuid
# BusyBox without it never drops privileges: every applet, `sh` included, would run as root for
# any user. Nothing on Myelin needs setuid: myelin-init starts every service with its own user,
# and D-Bus services are started by myelin-init, not by dbus-daemon's activation helper.
set -eu

die() { echo "post-fakeroot: $*" >&2; exit 1; }

[ $# -ge 1 ] || die "usage: $0 <TARGET_DIR> [<board>]"
TARGET_DIR=$1
[ -d "$TARGET_DIR" ] || die "target directory $TARGET_DIR does not exist"

# -perm /6000: setuid or setgid. Setgid directories only make new files inherit the group; they
# grant nothing, so only files are cleared.
find "$TARGET_DIR" -type f -perm /6000 | while IFS= read -r f; do
	echo "post-fakeroot: clearing setuid/setgid on /${f#"$TARGET_DIR"/}"
	chmod ug-s "$f"
done
left=$(find "$TARGET_DIR" -type f -perm /6000 | head -n 5)
[ -z "$left" ] || die "setuid/setgid files remain: $left"
