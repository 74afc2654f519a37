"""The Nerves migration scenario: a real Nerves x86_64 disk takes Myelin's .fw through its own
upgrade task and boots Myelin (issue 13's proof in QEMU).

The disk is the golden one the reference fwup wrote from nerves_system_x86_64's own fwup.conf
(rust/crates/myelin-fw/tests/golden/nerves: Nerves' partitions, its single 8 KiB environment at
byte 0x100000 with user keys set by Debian's fw_setenv, Nerves' grub.cfg and grubenv). Two of its
parts are stand-in bytes in the corpus, and are put back as a Nerves device has them:

* GRUB. The corpus holds random bytes where Nerves writes GRUB's boot.img and core image. Here
  they are GRUB's real i386-pc images, made with grub-mkimage from Nerves' own module list
  (research/nerves.md: boot linux ext2 squash4 fat part_msdos normal biosdisk loadenv echo true
  test sleep) and the same prefix, (hd0,msdos1)/boot/grub. Two modules are added, serial and
  terminal, only so that GRUB's choice of slot shows on the serial console the test reads.
* Nerves' own kernel. The corpus' Nerves rootfs holds marker files, no kernel, so when GRUB
  returns to the Nerves slot nothing boots from it: the revert is shown by GRUB's choice on the
  console and by the environment Nerves would read, both checked.

Nerves runs the upgrade as `fwup -a -d /dev/rootdisk0 -t upgrade` from its root filesystem, and
Myelin's upgrade.nerves-* tasks find the running slot the way fwup does, by the partition that
holds `/` (require-path-at-offset). So myelin-fw runs chrooted into the Nerves slot, mounted
from the disk's own partition (a loop device with partitions), with the host's /usr bind-mounted
for the C library (the corpus made the rootfs chroot-able for this): the same task, the same
running-slot detection, the same device.
"""

import json
import os
import re
import shutil
import subprocess
import tempfile

from harness import Failure, scenario
from scenarios import BIN_DIR, ROOT, kv_all, never_ready_overlay, running_slot, running_version, \
    update_status, wait_validated

GOLDEN = os.path.join(ROOT, "rust", "crates", "myelin-fw", "tests", "golden", "nerves")
BOARD_DIR = os.path.join(ROOT, "board", "x86_64")
# Nerves' x86_64 GRUB modules (nerves_system_x86_64's Buildroot configuration), plus the two
# that mirror GRUB's messages on the serial console for the test.
NERVES_GRUB_MODULES = ("boot linux ext2 squash4 fat part_msdos normal biosdisk loadenv echo true "
                       "test sleep").split() + ["serial", "terminal"]
GRUB_DIR = "/usr/lib/grub/i386-pc"
# GRUB's core image ends before the environment at block 2048.
GRUB_CORE_MAX = 2047 * 512
# The user keys set on the golden disk after Nerves' `complete` (its README).
USER_KEYS = {"nerves_serial_number": "MYL0001", "wifi_ssid": "home", "app_key": "keep-me",
             "empty_key": ""}
# The golden disk's size in bytes: the end of its last partition (its README).
NERVES_DISK_SIZE = 823394304
# Nerves' environment on x86_64: one copy of 8 KiB at byte 0x100000 (offset, size).
NERVES_ENV = (0x100000, 0x2000)
# What GRUB prints when Myelin's grub.cfg picks a slot.
GRUB_SLOT = re.compile(rb"myelin: (trying|booting) slot ([ab])")


def nerves_grub(run):
    """GRUB's core image as nerves_system_x86_64 builds it; returns its path."""
    core = os.path.join(run.dir, "nerves-grub.img")
    subprocess.run(["grub-mkimage", "-d", GRUB_DIR, "-O", "i386-pc", "-o", core,
                    "-p", "(hd0,msdos1)/boot/grub", "-c", os.path.join(BOARD_DIR, "grub-early.cfg")]
                   + NERVES_GRUB_MODULES, check=True)
    if os.path.getsize(core) > GRUB_CORE_MAX:
        raise Failure(f"GRUB's core image is {os.path.getsize(core)} bytes, over Nerves' gap")
    return core


def nerves_disk(run, path):
    """The golden Nerves x86_64 disk at path, with GRUB's real boot code and core image."""
    xz = subprocess.Popen(["xz", "-dc", os.path.join(GOLDEN, "x86_64-nerves-complete.img.xz")],
                          stdout=subprocess.PIPE)
    # Sparse, as the image the tests boot: the zero blocks are holes.
    subprocess.run(["dd", f"of={path}", "bs=1M", "iflag=fullblock", "conv=sparse", "status=none"],
                   stdin=xz.stdout, check=True)
    xz.stdout.close()
    if xz.wait() != 0:
        raise Failure("xz could not decompress the golden Nerves disk")
    # Its full size, holes at the end included: the last partition ends where the file does.
    os.truncate(path, NERVES_DISK_SIZE)
    with open(os.path.join(GRUB_DIR, "boot.img"), "rb") as f:
        boot_code = f.read(440)
    with open(nerves_grub(run), "rb") as f:
        core = f.read()
    with open(path, "r+b") as disk:
        # Only the boot code: the disk signature (0x04030201) and the partition table stay.
        disk.write(boot_code)
        disk.seek(512)
        disk.write(core)
    return path


def nerves_upgrade(run, disk, fw, public_key):
    """Nerves, running from slot A of disk, applies fw with `fwup -a -t upgrade` as it would:
    myelin-fw chrooted into the mounted Nerves slot, on the disk's loop device. Returns the
    output of myelin-fw (it names the task it ran)."""
    loop = subprocess.run(["losetup", "--find", "--show", "--partscan", disk], check=True,
                          stdout=subprocess.PIPE, text=True).stdout.strip()
    try:
        with tempfile.TemporaryDirectory(dir=run.dir) as work:
            for name, src in (("myelin-fw", os.path.join(BIN_DIR, "myelin-fw")), ("update.fw", fw),
                              ("release.pub", public_key)):
                shutil.copy(src, os.path.join(work, name))
            # A private mount namespace: whatever happens, no mount outlives the command.
            script = f"""set -eu
# A kernel without a partition-table parser (some VM hosts) scans nothing: add them by hand.
[ -b {loop}p2 ] || partx --add {loop}
root={work}/root
mkdir -p "$root"
mount -t squashfs -o ro {loop}p2 "$root"
grep -q nerves-golden "$root/etc/nerves-marker"
mount --rbind /usr "$root/usr"
mount --rbind /dev "$root/dev"
mount -t sysfs sysfs "$root/sys"
mount -t proc proc "$root/proc"
mount -t tmpfs tmpfs "$root/tmp"
mount -t tmpfs tmpfs "$root/run"
mount -t tmpfs tmpfs "$root/var"
mkdir "$root/var/lock"
cp {work}/myelin-fw {work}/update.fw {work}/release.pub "$root/tmp/"
chroot "$root" /tmp/myelin-fw -a -d {loop} -i /tmp/update.fw -p /tmp/release.pub -t upgrade
"""
            out = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                                  script], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                 text=True, timeout=run.remaining(120))
            if out.returncode != 0:
                raise Failure(f"Nerves' upgrade to Myelin failed:\n{out.stdout}")
            return out.stdout
    finally:
        subprocess.run(["losetup", "--detach", loop], check=True)


def nerves_env(run, disk):
    """The environment as Nerves reads it (one copy, Debian's fw_printenv), as a dict."""
    config = os.path.join(run.dir, "nerves-fw_env.config")
    with open(config, "w", encoding="utf-8") as f:
        f.write(f"{disk} {NERVES_ENV[0]:#x} {NERVES_ENV[1]:#x}\n")
    out = subprocess.run(["fw_printenv", "-c", config], check=True, stdout=subprocess.PIPE,
                         text=True).stdout
    return dict(line.partition("=")[::2] for line in out.splitlines())


def check_user_keys(env, when):
    """Every user key of the Nerves disk is in env, with its value."""
    lost = {k: v for k, v in USER_KEYS.items() if env.get(k) != v}
    if lost:
        raise Failure(f"{when}: user keys lost or changed (expected {lost}, have "
                      f"{ {k: env.get(k) for k in lost} })")


def grub_slot(dev, timeout):
    """Waits for GRUB's choice of slot on the console: ('trying'|'booting', slot)."""
    m = dev.machine.wait_for(GRUB_SLOT, dev.run.remaining(timeout))
    return m.group(1).decode(), m.group(2).decode()


@scenario("nerves-migration", "a Nerves x86_64 disk upgrades itself to Myelin; a Myelin that never "
          "gets ready returns to Nerves, a good one validates and keeps every user key",
          needs=["myelin-init", "myelin-kv", "myelin-fw", "myelin-update"])
def nerves_migration(run):
    """The golden Nerves disk applies, with its own upgrade task, first a Myelin firmware that
    never gets ready: GRUB tries Myelin once, myelin-update gives up on it, and GRUB returns to
    Nerves' slot, whose environment still says what Nerves wrote. Nerves then applies the good
    firmware: Myelin boots from slot b, reads the Nerves keys through its converted environment,
    validates itself, and keeps slot b and every key across a reboot."""
    images = run.images
    good = images.firmware("base", images.BASE_VERSION)
    bad_version = "2.0.0-never-ready"
    bad = images.firmware("never-ready", bad_version, [never_ready_overlay(run)])
    disk = nerves_disk(run, os.path.join(run.dir, "nerves-golden.img"))
    with run.step("Nerves applies a Myelin that never gets ready", timeout=150):
        out = nerves_upgrade(run, disk, bad, images.public_key)
        if "Upgrading partition B from Nerves to Myelin" not in out:
            raise Failure(f"the upgrade did not run task upgrade.nerves-b:\n{out}")
    dev = run.device("nerves", image=disk)
    with run.step("GRUB tries Myelin once", timeout=60):
        dev.power_on()
        if grub_slot(dev, 50) != ("trying", "b") or grub_slot(dev, 10) != ("booting", "b"):
            raise Failure("GRUB did not try Myelin's slot b first")
        dev.wait_kernel_start(30)
    with run.step("myelin-update gives up; GRUB returns to Nerves' slot a", timeout=300):
        choice = grub_slot(dev, 290)
        if choice != ("booting", "a"):
            raise Failure(f"after the failed trial GRUB chose {choice}, not Nerves' slot a")
        dev.power_off()
        env = nerves_env(run, dev.disk)
        check_user_keys(env, "after the reverted trial")
        if env.get("nerves_fw_active") != "a" or env.get("a.nerves_fw_version") != "1.0.0":
            raise Failure(f"the environment no longer says Nerves runs slot a: {env}")
    with run.step("Nerves applies the good Myelin", timeout=150):
        out = nerves_upgrade(run, dev.disk, good, images.public_key)
        if "Upgrading partition B from Nerves to Myelin" not in out:
            raise Failure(f"the second upgrade did not run task upgrade.nerves-b:\n{out}")
    with run.step("Myelin boots from slot b on trial", timeout=180):
        dev.power_on()
        if grub_slot(dev, 50) != ("trying", "b") or grub_slot(dev, 10) != ("booting", "b"):
            raise Failure("GRUB did not try Myelin's slot b")
        dev.wait_up(170)
        if running_slot(dev) != "b" or running_version(dev) != images.BASE_VERSION:
            raise Failure("the device is not running Myelin from slot b")
        check_user_keys(kv_all(dev), "on Myelin's first boot")
        # Where the running slot's keys put it, not Nerves' /root (nerves_fw_active is still a).
        # The corpus' application partition holds no filesystem yet, so it is formatted.
        data = json.loads(dev.sh("myelinctl --json status")).get("data") or {}
        if data.get("mountpoint") != "/data" or data.get("state") not in ("mounted", "formatted"):
            raise Failure(f"/data is not the application partition: {data}")
    with run.step("Myelin validates itself", timeout=150):
        wait_validated(dev, "b", 140)
        env = kv_all(dev)
        check_user_keys(env, "after validation")
        if env.get("nerves_fw_active") != "b" or env.get("b.nerves_fw_validated") != "1":
            raise Failure(f"the environment does not commit slot b: {env}")
    with run.step("a reboot stays on Myelin with every key", timeout=180):
        dev.reboot(170)
        if running_slot(dev) != "b" or update_status(dev)["status"] != "b":
            raise Failure("the validated Myelin was not kept")
        check_user_keys(kv_all(dev), "after a reboot")
