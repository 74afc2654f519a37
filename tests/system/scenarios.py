"""The system-test scenarios, in run order. Each one boots the x86_64 board image in QEMU.

What each proves is in its docstring. They talk to the device through the console shell, using
only what a user of the device has: busybox, fw_printenv/fw_setenv (myelin-kv), myelinctl,
myelin-fw with the board's /usr/share/myelin/ops.fw, and the kernel's /proc and /sys.

Each scenario names the programs it needs; a missing one fails it.
"""

import hashlib
import json
import os
import random
import re
import shutil
import socket
import subprocess
import tempfile
import time
import tomllib
import urllib.request

from harness import READY, Failure, TcpListener, scenario
from myelin_qemu import Terminal

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# The host's myelin-fw (signing, keys).
BIN_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                       "rust", "target", "release")
# board/x86_64/fwup.conf: where /data starts on the disk (512-byte blocks).
APP_PART_OFFSET = 1083904
OPS_FW = "/usr/share/myelin/ops.fw"


# --- what the device reports -----------------------------------------------------------------

def running_slot(dev):
    """The slot the running kernel came from (GRUB passes myelin.slot=a|b)."""
    m = re.search(r"\bmyelin\.slot=([ab])\b", dev.sh("cat /proc/cmdline"))
    if not m:
        raise Failure("no myelin.slot= on the kernel command line")
    return m.group(1)


def running_version(dev):
    """The firmware version the root filesystem was built as (/etc/myelin/release)."""
    return dev.sh(". /etc/myelin/release && echo \"$MYELIN_VERSION\"")


def kv(dev, key):
    """One variable of the U-Boot environment, through myelin-kv's fw_printenv; None if unset."""
    status, out = dev.sh(f"fw_printenv -n {key}", check=False)
    return out if status == 0 else None


def kv_all(dev):
    """The whole U-Boot environment as a dict; fails if it cannot be read cleanly."""
    env = {}
    for line in dev.sh("fw_printenv").splitlines():
        name, sep, value = line.partition("=")
        if not sep:
            raise Failure(f"fw_printenv printed a line that is no variable: {line!r}")
        env[name] = value
    return env


def ops(dev, task, timeout=60):
    """Runs a task of the board's ops.fw on the boot disk; returns its messages."""
    return dev.sh(f"myelin-fw apply -q -d /dev/rootdisk0 -i {OPS_FW} -t {task} 2>&1",
                  timeout=timeout)


def fw_status(dev):
    """The `status` task's verdict: a, b, a->b, b->a, 'a (b reverted)' or 'b (a reverted)'."""
    out = ops(dev, "status")
    m = re.search(r"^(?:myelin-fw: )?([ab](?:->[ab]| \([ab] reverted\))?)\s*$", out, re.M)
    if not m:
        raise Failure(f"status printed no slot: {out!r}")
    return m.group(1)


def wait_network(dev, timeout=60):
    """Waits until the device has a default route (its DHCP lease from QEMU's network)."""
    deadline = time.monotonic() + timeout
    while not dev.sh("ip -4 route show default"):
        if time.monotonic() > deadline:
            raise Failure(f"no default route after {timeout}s:\n{dev.sh('ip addr; ip route')}")
        time.sleep(1)


def init_config(run):
    """/etc/myelin/init.toml of the base image, parsed."""
    with open(os.path.join(run.images.target_dir(), "etc/myelin/init.toml"), "rb") as f:
        return tomllib.load(f)


def duration(text):
    """Seconds in one of myelin-init's durations ("250ms", "5s", "2m", "1h")."""
    m = re.fullmatch(r"([0-9.]+)(ms|s|m|h)", text)
    if not m:
        raise Failure(f"unexpected duration {text!r}")
    return float(m.group(1)) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[m.group(2)]


def hostname_regex(pattern):
    """A regex for the hostnames myelin-init can make from a hostname pattern (erlinit's rules:
    %s the whole serial number, %.Ns its first N characters, %-.Ns its last N)."""
    out = ""
    for token in re.split(r"(%-?\.?\d*s)", pattern):
        m = re.fullmatch(r"%(-?)\.?(\d*)s", token)
        if m:
            out += "[a-z0-9.-]{1,%s}" % (m.group(2) or "64")
        else:
            out += re.escape(token.lower())
    return re.compile(out)


# --- scenarios -------------------------------------------------------------------------------

@scenario("first-boot", "first boot formats /data, starts every service, sets the hostname",
          needs=["myelin-init", "myelin-kv"])
def first_boot(run):
    """A fresh disk image boots to READY; /data, which `complete` left wiped, is formatted and
    mounted read-write; the hostname follows init.toml's pattern; the environment holds the
    metadata `complete` wrote."""
    image = run.images.base_image()
    with open(image, "rb") as f:
        f.seek(APP_PART_OFFSET * 512)
        if f.read(4096) != b"\xff" * 4096:
            raise Failure("the image's /data partition is not wiped: the first boot proves nothing")
    dev = run.device()
    with run.step("boot to all services ready", timeout=120):
        dev.boot()
    with run.step("/data is ext4, mounted read-write and writable", timeout=30):
        mounts = [line.split() for line in dev.sh("cat /proc/mounts").splitlines()]
        data = [m for m in mounts if m[1] == "/data"]
        if not data:
            raise Failure("/data is not mounted")
        _, _, fstype, options = data[-1][:4]
        if fstype != "ext4" or "rw" not in options.split(","):
            raise Failure(f"/data is {fstype} ({options}), expected ext4 rw")
        dev.sh("echo probe > /data/.systest && grep -qx probe /data/.systest && rm /data/.systest")
    with run.step("myelin-init says it formatted /data and tracks services by cgroup", timeout=30):
        data = json.loads(dev.sh("myelinctl --json status")).get("data") or {}
        if data.get("state") != "formatted":
            raise Failure(f"myelin-init reports /data as {data}, expected formatted")
        log = dev.sh("myelinctl log init")
        if "process tracking: cgroup v2" not in log:
            raise Failure(f"myelin-init does not use cgroups:\n{log}")
    with run.step("every service is ready", timeout=30):
        report = json.loads(dev.sh("myelinctl --json ready"))
        by_name = {s["name"]: s for s in report.get("services", [])}
        for svc in init_config(run).get("service", []):
            state = by_name.get(svc["name"])
            if state is None:
                raise Failure(f"myelinctl does not know service {svc['name']}: {report}")
            if svc.get("optional") and state["state"] == "not installed":
                continue
            # A transient service may end cleanly: myelin-hub does when no fleet is configured.
            if svc.get("restart") == "transient" and state["state"] == "exited":
                continue
            if not state["ready"]:
                raise Failure(f"service {svc['name']} is not ready: {state}")
        if not report.get("all_ready"):
            raise Failure(f"myelin-init does not report all services ready: {report}")
    with run.step("hostname set from the pattern", timeout=30):
        pattern = init_config(run).get("boot", {}).get("hostname")
        hostname = dev.sh("hostname")
        if pattern is None:
            raise Failure("init.toml sets no hostname pattern")
        if not hostname_regex(pattern).fullmatch(hostname):
            raise Failure(f"hostname {hostname!r} does not follow the pattern {pattern!r}")
    with run.step("the environment holds the firmware metadata", timeout=30):
        env = kv_all(dev)
        expect = {
            "nerves_fw_active": "a",
            "a.nerves_fw_validated": "1",
            "a.nerves_fw_platform": "x86_64",
            "a.nerves_fw_architecture": "x86_64",
            "a.nerves_fw_version": run.images.BASE_VERSION,
            "nerves_fw_devpath": "/dev/rootdisk0",
        }
        wrong = {k: env.get(k) for k, v in expect.items() if env.get(k) != v}
        if wrong:
            raise Failure(f"unexpected environment values {wrong}, expected {expect}")
        if running_slot(dev) != "a" or running_version(dev) != run.images.BASE_VERSION:
            raise Failure("the first boot did not run slot a with the base version")


def free_tcp_port():
    """A TCP port on the host that nothing listens on now."""
    import socket  # noqa: PLC0415
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def ssh_options(run):
    """ssh's (and sftp's) options for the guest: the key the images are built with, no prompts."""
    return ["-i", run.images.ssh_key, "-F", "none",
            "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
            "-o", "BatchMode=yes", "-o", "ConnectTimeout=10", "-o", "LogLevel=ERROR"]


def ssh_command(run, port, *args):
    """ssh to the guest's forwarded port, with the key the images are built with."""
    return ["ssh", "-p", str(port), *ssh_options(run), *args]


def sftp_roundtrip(run, port):
    """Puts a file of random bytes on the device's /data with sftp (dropbear runs the image's
    sftp-server), reads it back with sftp and with ssh; all three must be the same bytes."""
    payload = os.urandom(48 * 1024)
    remote = f"/data/systest-sftp-{random.getrandbits(32):08x}.bin"
    with tempfile.TemporaryDirectory() as tmp:
        sent = os.path.join(tmp, "sent.bin")
        back = os.path.join(tmp, "back.bin")
        with open(sent, "wb") as f:
            f.write(payload)
        batch = os.path.join(tmp, "batch")
        with open(batch, "w", encoding="utf-8") as f:
            f.write(f"put {sent} {remote}\nget {remote} {back}\n")
        cmd = ["sftp", "-P", str(port), *ssh_options(run), "-b", batch, "root@127.0.0.1"]
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=50, check=False)
        if res.returncode != 0:
            raise Failure(f"sftp failed ({res.returncode}): {res.stderr.strip()!r}")
        with open(back, "rb") as f:
            if f.read() != payload:
                raise Failure("the file sftp got back differs from the one it put")
    res = subprocess.run(ssh_command(run, port, "root@127.0.0.1", f"cat {remote} && rm {remote}"),
                         capture_output=True, timeout=50, check=False)
    if res.returncode != 0 or res.stdout != payload:
        raise Failure(f"the file sftp put is not on the device as sent ({res.returncode}, "
                      f"{len(res.stdout)} of {len(payload)} bytes)")


# --- the product developer's loop (scripts/new-product, scripts/qemu --app, scripts/upload) ----

# The product the console and devloop scenarios boot; its QEMU build lands in
# $MYELIN_CACHE/qemu/app/<name>, apart from any product of the user's.
DEVLOOP_PRODUCT = "systest_devloop"
DEVLOOP_PKG = DEVLOOP_PRODUCT.replace("_", "-")
DEVLOOP_GREETING = 'info!("hello from {} {}"'


def product_terminal(run, port):
    """A product made by scripts/new-product, built into the image and booted by
    `scripts/qemu --app DIR` on a pseudo-terminal, as a user does it; returns (terminal,
    product dir, env). Images are signed and authorize the tests' SSH key, as the base image."""
    product = os.path.join(run.dir, "product")
    subprocess.run([os.path.join(ROOT, "scripts", "new-product"), product, "--name",
                    DEVLOOP_PRODUCT], check=True, stdout=subprocess.DEVNULL)
    env = dict(os.environ, MYELIN_QEMU_SSH_PORT=str(port), MYELIN_QEMU_ACCEL="tcg",
               TERM="vt100", MYELIN_FW_PUBLIC_KEYS=run.images.public_key,
               MYELIN_FW_PRIVATE_KEY=run.images.private_key,
               MYELIN_SSH_AUTHORIZED_KEYS=run.images.ssh_key + ".pub")
    term = Terminal([os.path.join(ROOT, "scripts", "qemu"), "--disk",
                     os.path.join(run.dir, "console-disk.img"), "--app", product, "--rebuild"],
                    os.path.join(run.dir, "terminal.log"), env=env)
    run.devices.append(_TerminalDevice(term))
    # The bound only catches a hang: with a cold cache the app's first build compiles its crates
    # (about 4 min of CPU on 2 cores), more on a loaded machine.
    with run.step("scripts/qemu --app builds the product's image", timeout=900):
        term.start()
        term.wait_for("image repacked in", 890)
    with run.step("boot in a terminal", timeout=150):
        term.wait_for("Ctrl-A X quits", 30)
        term.wait_for(READY, 140)
    return term, product, env


@scenario("console", "scripts/qemu --app in a terminal: a product's image built and booted, "
          "type on the serial console, read the output, login banner and os-release, SSH with "
          "the built-in key only, sftp, quiet kernel, Ctrl-A X",
          needs=["myelin-init"])
def console(run):
    """What a new user does first, through a pseudo-terminal: `scripts/new-product`, then
    `scripts/qemu --app DIR`, which builds the product's app into the image and boots it; wait
    for the boot, type commands on the serial console and read their output; ssh in on the
    forwarded port with the key the image was built with (dropbear's host key is made on /data),
    put a file with sftp and read it back, see a password login refused; kernel notices stay off
    the console; Ctrl-A X quits QEMU. When the devloop scenario runs next, it takes this boot
    over (and quits QEMU at its end)."""
    port = free_tcp_port()
    term, product, env = product_terminal(run, port)
    with run.step("type a command on the console, read its output", timeout=60):
        # Enter on a terminal is a carriage return; the guest's tty turns it into a newline.
        term.send("echo typed-$((6 * 7))\r")
        term.wait_for("typed-42", 30)
        term.send("cat /etc/os-release\r")
        m = term.wait_for(re.compile(rb'PRETTY_NAME="([^"\r\n]*)"'), 30)
        if b"Myelin, x86_64" not in m.group(1) or DEVLOOP_PRODUCT.encode() not in m.group(1):
            raise Failure(f"os-release's PRETTY_NAME is {m.group(1)!r}")
        if b"on Myelin (x86_64)" not in term.output_since(0):
            raise Failure("no login banner (/etc/motd) on the console")
    with run.step("kernel notices stay off the console, warnings show", timeout=60):
        # printf's format keeps the typed line's echo from matching the message itself.
        start = term.position()
        term.send("printf '<5>quiet-%s\\n' notice >/dev/kmsg; printf '<4>loud-%s\\n' warning "
                  ">/dev/kmsg; echo done-$((1 + 1))\r")
        term.wait_for("done-2", 30)
        seen = term.output_since(start)
        if b"loud-warning" not in seen:
            raise Failure("a kernel warning did not reach the console")
        if b"quiet-notice" in seen:
            raise Failure("a kernel notice reached the console (console log level)")
    with run.step("ssh with the built-in key; host key on /data; the app runs", timeout=90):
        deadline = time.monotonic() + 80
        while True:
            res = subprocess.run(ssh_command(run, port, "root@127.0.0.1",
                                             ". /etc/myelin/release; echo v=$MYELIN_VERSION; "
                                             "ls /data/myelin/ssh; "
                                             f"myelinctl log {DEVLOOP_PKG}"),
                                 capture_output=True, text=True, timeout=60, check=False)
            if res.returncode == 0 or time.monotonic() > deadline:
                break
            time.sleep(2)
        if res.returncode != 0:
            raise Failure(f"ssh with the built-in key failed ({res.returncode}): {res.stderr}")
        if "v=0.1.0+dev." not in res.stdout:
            raise Failure(f"ssh did not reach the product image's shell: {res.stdout!r}")
        if "dropbear_ed25519_host_key" not in res.stdout:
            raise Failure(f"dropbear's host key is not on /data: {res.stdout!r}")
        if f"hello from {DEVLOOP_PKG}" not in res.stdout:
            raise Failure(f"the product's app did not log its greeting: {res.stdout!r}")
    with run.step("sftp puts a file and gets it back", timeout=60):
        sftp_roundtrip(run, port)
    with run.step("password logins are refused", timeout=60):
        password_refused(port)
    if "devloop" in run.later:
        run.hand_over("product-terminal", run.devices[-1], port=port, product=product, env=env)
        return
    with run.step("Ctrl-A X quits QEMU", timeout=60):
        quit_terminal(term)


def password_refused(port):
    """A login without a key (password or keyboard-interactive only) must be refused, and the
    server must offer nothing but public keys."""
    res = subprocess.run(
        ["ssh", "-p", str(port), "-F", "none", "-o", "StrictHostKeyChecking=no",
         "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes",
         "-o", "PubkeyAuthentication=no", "-o", "PreferredAuthentications=password,"
         "keyboard-interactive", "root@127.0.0.1", "true"],
        capture_output=True, text=True, timeout=60, check=False)
    if res.returncode == 0 or "Permission denied (publickey)" not in res.stderr:
        raise Failure(f"a login without a key was not refused as publickey-only: "
                      f"{res.returncode} {res.stderr!r}")


def quit_terminal(term):
    """Ctrl-A X must end scripts/qemu, with status 0."""
    term.send(b"\x01x")
    status = term.wait_exit(30)
    if status != 0:
        raise Failure(f"scripts/qemu exited with {status} after Ctrl-A X")


@scenario("devloop", "a product's loop on the console's boot: edit the app, scripts/qemu --app "
          "--no-boot (app only), scripts/upload, the new version validated and the edit running",
          needs=["myelin-init", "myelin-update", "myelin-fw"])
def devloop(run):
    """Issue 12's loop, as a product developer runs it: on the boot of the product made by
    scripts/new-product (the console scenario's, taken over; its own when console did not run),
    an edit to app/src/main.rs, an app-only rebuild (`scripts/qemu --app DIR --no-boot` reuses
    the target directory), `scripts/upload localhost:PORT FW` over the forwarded SSH port with
    the key built into the image: the device reboots into slot b, the new version validates,
    the edited app logs its new greeting; a password login still fails; Ctrl-A X quits."""
    taken = run.take_over("product-terminal")
    if taken is not None:
        dev, info = taken
        term, product, env, port = dev.machine, info["product"], info["env"], info["port"]
    else:
        port = free_tcp_port()
        term, product, env = product_terminal(run, port)
    main_rs = os.path.join(product, "app", "src", "main.rs")
    token = f"edited-{random.getrandbits(32):08x}"
    with run.step("edit the app; app-only rebuild and repack", timeout=150):
        with open(main_rs, encoding="utf-8") as f:
            source = f.read()
        if DEVLOOP_GREETING not in source:
            raise Failure(f"{main_rs} has no {DEVLOOP_GREETING!r} to edit")
        with open(main_rs, "w", encoding="utf-8") as f:
            f.write(source.replace(DEVLOOP_GREETING, f'info!("hello {token} from {{}} {{}}"'))
        res = subprocess.run([os.path.join(ROOT, "scripts", "qemu"), "--app", product, "--no-boot"],
                             env=env, capture_output=True, text=True, timeout=140, check=False)
        if res.returncode != 0:
            raise Failure(f"scripts/qemu --app --no-boot failed: {res.stderr[-2000:]}")
        if "reusing" not in res.stderr:
            raise Failure(f"the repack did not reuse the target directory: {res.stderr[-2000:]}")
        m = re.search(r"scripts/upload localhost:\d+ (\S+\.fw)", res.stdout)
        if not m or not os.path.exists(m.group(1)):
            raise Failure(f"scripts/qemu --no-boot named no .fw: {res.stdout!r}")
        fw = m.group(1)
        print(f"    {res.stderr.strip().splitlines()[-1]}", flush=True)
    with run.step("scripts/upload: reboot into it, validated", timeout=240):
        upload_env = dict(env, MYELIN_UPLOAD_TIMEOUT="200",
                          MYELIN_SSH_OPTS=f"-i {run.images.ssh_key} -F none "
                                          f"-o UserKnownHostsFile={run.dir}/known_hosts")
        res = subprocess.run([os.path.join(ROOT, "scripts", "upload"), f"localhost:{port}", fw],
                             env=upload_env, capture_output=True, text=True, timeout=230,
                             check=False)
        if res.returncode != 0:
            raise Failure(f"scripts/upload failed: {res.stderr.strip()!r}")
        if not re.search(r"runs 0\.1\.0\+dev\.\S+ from slot b, validated", res.stdout):
            raise Failure(f"scripts/upload did not report slot b validated: {res.stdout!r}")
    with run.step("the edited app runs", timeout=60):
        res = subprocess.run(ssh_command(run, port, "root@127.0.0.1",
                                         f"myelinctl log {DEVLOOP_PKG}"),
                             capture_output=True, text=True, timeout=50, check=False)
        if res.returncode != 0 or f"hello {token} from {DEVLOOP_PKG}" not in res.stdout:
            raise Failure(f"the edited app's greeting is not in its log: {res.stdout!r}")
    with run.step("password logins are refused", timeout=60):
        password_refused(port)
    with run.step("Ctrl-A X quits QEMU", timeout=60):
        quit_terminal(term)


class _TerminalDevice:
    """Lets the harness stop a Terminal with the scenario's devices."""

    def __init__(self, term):
        self.machine = term
        self.log = term.log_path

    def stop(self):
        """Ends the program if it still runs."""
        self.machine.stop()


@scenario("reboot", "a clean reboot keeps /data and the KV environment",
          needs=["myelin-init", "myelin-kv"])
def reboot(run):
    """Data written to /data and a variable set through fw_setenv before `reboot` are there
    after it; the device comes back to READY on the same slot."""
    token = f"{random.getrandbits(64):016x}"
    dev = run.device()
    with run.step("boot", timeout=120):
        dev.boot()
    with run.step("write a file to /data and a KV variable", timeout=30):
        dev.sh(f"mkdir -p /data/systest && echo {token} > /data/systest/token")
        dev.sh(f"fw_setenv systest_token {token}")
        if kv(dev, "systest_token") != token:
            raise Failure("fw_printenv does not read back what fw_setenv wrote")
    with run.step("reboot to all services ready", timeout=150):
        dev.reboot()
        if dev.boots != 2:
            raise Failure(f"expected a second kernel start, saw {dev.boots}")
    with run.step("the file and the variable survived", timeout=30):
        if dev.sh("cat /data/systest/token") != token:
            raise Failure("/data/systest/token changed across the reboot")
        data = json.loads(dev.sh("myelinctl --json status")).get("data") or {}
        if data.get("state") != "mounted":
            raise Failure(f"the second boot reports /data as {data}, expected mounted as it was")
        if kv(dev, "systest_token") != token:
            raise Failure("systest_token changed across the reboot")
        if running_slot(dev) != "a":
            raise Failure("the reboot changed the slot")


def wait_validated(dev, slot, timeout):
    """Waits until myelin-update reports slot committed (validated); returns its status."""
    return wait_until(f"slot {slot} validated", lambda: (st := update_status(dev))["status"] == slot
                      and st, timeout, interval=2)


def update_status(dev):
    """`myelin-update status --json`: state, status verdict, running slot, trial, version, the
    slots' metadata and the outcome of the last install."""
    return json.loads(dev.sh("myelin-update status --json"))


@scenario("update", "an update over HTTP boots the other slot, validates, reports the new version",
          needs=["myelin-init", "myelin-kv", "myelin-fw", "myelin-update"])
def update(run):
    """myelin-update refuses a .fw signed by a key the device does not have, changing nothing;
    then it installs the properly signed newer .fw that the host serves over HTTP; the next
    boot runs it from slot b on trial, myelin-update validates it once the critical services
    are ready, and the device reports the new version, and stays on it across a reboot."""
    new_version = "2.0.0"
    fw = run.images.firmware("update", new_version)
    url = run.serve(fw)
    # The same firmware signed by a key the device does not know.
    forged = os.path.join(run.dir, "forged.fw")
    other_key = os.path.join(run.dir, "other")
    subprocess.run([os.path.join(BIN_DIR, "myelin-fw"), "gen-keys", "-o", other_key],
                   check=True, stdout=subprocess.DEVNULL)
    subprocess.run([os.path.join(BIN_DIR, "myelin-fw"), "sign", "-i", fw, "-o", forged,
                    "-s", other_key + ".priv"], check=True)
    forged_url = run.serve(forged)
    dev = run.device()
    with run.step("boot", timeout=120):
        dev.boot()
        wait_network(dev)
    with run.step("an update signed by an unknown key is refused, nothing changes", timeout=120):
        status, out = dev.sh(f"myelin-update install --quiet {forged_url}", timeout=110,
                             check=False)
        if status == 0:
            raise Failure(f"myelin-update installed a firmware with a foreign signature: {out}")
        if "signature" not in out.lower():
            raise Failure(f"the install failed, but not for the signature: {out}")
        st = update_status(dev)
        if st["status"] != "a" or st["slots"].get("b", {}).get("version"):
            raise Failure(f"the refused update changed the device: {st}")
    with run.step("install the update from the host", timeout=180):
        dev.sh(f"myelin-update install --quiet {url}", timeout=170)
        st = update_status(dev)
        if st["status"] != "a->b" or st["last_install"]["outcome"] != "pending-reboot":
            raise Failure(f"after the install the next boot is not a trial of slot b: {st}")
        if st["slots"]["b"].get("version") != new_version:
            raise Failure(f"slot b's metadata does not name the new version: {st}")
    with run.step("reboot into slot b, on trial", timeout=150):
        dev.reboot()
        if running_slot(dev) != "b" or running_version(dev) != new_version:
            raise Failure("the device did not boot the new firmware from slot b")
    with run.step("the new firmware validates itself", timeout=120):
        st = wait_validated(dev, "b", 110)
        if st["version"] != new_version or st["trial"] or st["last_install"]["outcome"] != "validated":
            raise Failure(f"the device does not report the new version as validated: {st}")
        if kv(dev, "nerves_fw_active") != "b" or kv(dev, "b.nerves_fw_validated") != "1":
            raise Failure("the environment does not commit slot b")
    with run.step("a reboot stays on the new firmware", timeout=150):
        dev.reboot()
        if running_slot(dev) != "b" or update_status(dev)["status"] != "b":
            raise Failure("the validated firmware was not kept")


def never_ready_overlay(run):
    """A rootfs overlay for a firmware that never becomes healthy: init.toml gains a critical
    service that never signals readiness, and update.toml gives a trial 60 s (instead of the
    product's 5 minutes) before myelin-update reboots it."""
    target = run.images.target_dir()
    overlay = os.path.join(run.images.root, "overlay-never-ready")
    shutil.rmtree(overlay, ignore_errors=True)
    os.makedirs(os.path.join(overlay, "etc/myelin"))
    with open(os.path.join(target, "etc/myelin/init.toml"), encoding="utf-8") as f:
        init = f.read()
    init += (
        "\n# tests/system: a critical service that never signals readiness\n"
        "[[service]]\n"
        'name = "never-ready"\n'
        'supervisor = "app"\n'
        'argv = ["/bin/sleep", "1000000"]\n'
        "notify = true\n"
        'ready_timeout = "infinity"\n'
        "critical = true\n"
    )
    with open(os.path.join(overlay, "etc/myelin/init.toml"), "w", encoding="utf-8") as f:
        f.write(init)
    with open(os.path.join(target, "etc/myelin/update.toml"), encoding="utf-8") as f:
        update_toml = f.read()
    update_toml, n = re.subn(r"(?m)^validate_timeout = .*$", 'validate_timeout = "60s"',
                             update_toml)
    if n != 1:
        raise Failure("update.toml has no validate_timeout line to shorten")
    with open(os.path.join(overlay, "etc/myelin/update.toml"), "w", encoding="utf-8") as f:
        f.write(update_toml)
    return overlay


@scenario("revert", "a firmware that never gets ready is tried once, then the device reverts",
          needs=["myelin-init", "myelin-kv", "myelin-fw", "myelin-update"])
def revert(run):
    """A firmware whose critical service never becomes ready boots once from slot b; it is never
    validated, myelin-update reboots it when its trial time is up, GRUB brings back slot a on
    its own, and the device reports the revert."""
    bad_version = "2.0.0-never-ready"
    bad = run.images.firmware("never-ready", bad_version, [never_ready_overlay(run)])
    url = run.serve(bad)
    dev = run.device()
    with run.step("boot", timeout=120):
        dev.boot()
        wait_network(dev)
    with run.step("install the broken firmware", timeout=180):
        dev.sh(f"myelin-update install --quiet {url}", timeout=170)
        if update_status(dev)["status"] != "a->b":
            raise Failure("the install did not arm a trial of slot b")
    with run.step("its trial boot happens", timeout=90):
        dev.machine.send("reboot\n")
        dev.wait_kernel_start(80)
        dev.machine.wait_for("myelin.slot=b", 30)
    with run.step("the device gives up on it and reboots into slot a by itself", timeout=240):
        dev.wait_up(230)
        if running_slot(dev) != "a" or running_version(dev) != run.images.BASE_VERSION:
            raise Failure("the device did not come back to the previous firmware")
    with run.step("the revert is reported", timeout=30):
        st = update_status(dev)
        if st["status"] != "a (b reverted)" or st["last_install"]["outcome"] != "reverted":
            raise Failure(f"the device does not report the revert: {st}")
        if st["last_install"].get("version") != bad_version:
            raise Failure(f"the reverted install is not the broken firmware: {st}")


def squashfs_digest(path):
    """(size, sha256) of a root filesystem image, to compare with a slot's first bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return os.path.getsize(path), h.hexdigest()


@scenario("power-cut", "power cuts during an update: every boot runs a complete firmware",
          needs=["myelin-init", "myelin-kv", "myelin-fw"])
def power_cut(run):
    """`myelin-fw apply -t upgrade` of a newer .fw runs on the device (the capability under
    myelin-update) and QEMU is killed at random moments while it writes (6 by default), one in
    each sixth of the time an uninterrupted upgrade takes (itself followed by a cut the moment it
    finishes, which must keep the new firmware). Every possible cut point of the same upgrade
    is checked on the host by myelin-fw's tests/power_cut.rs (each sector of each write); this
    scenario proves the same on a real kernel's block layer and page cache, where each cut
    costs a boot. After every cut the
    device boots a complete firmware, old or new: the slot GRUB chose holds, byte for byte, the
    root filesystem of the version its environment metadata names; the other slot, if the
    environment still calls it valid, holds what it names too (revert and GRUB's fallback would
    boot it); and the KV environment reads cleanly with a variable set before the first cut
    intact.

    MYELIN_POWER_CUTS sets the number of cuts, MYELIN_POWER_CUT_SEED the random seed."""
    cuts = int(os.environ.get("MYELIN_POWER_CUTS", "6"))
    seed = int(os.environ.get("MYELIN_POWER_CUT_SEED", str(time.time_ns() % 1_000_000)))
    rng = random.Random(seed)
    new_version = "2.0.0"
    fw = run.images.firmware("update", new_version)
    rootfs = {
        run.images.BASE_VERSION: squashfs_digest(os.path.join(run.images.base(),
                                                              "rootfs.squashfs")),
        new_version: squashfs_digest(os.path.join(os.path.dirname(fw), "rootfs.squashfs")),
    }
    url = run.serve(fw)
    dev = run.device()

    def write_through():
        # With the default writeback thresholds a 12 MiB upgrade sits in the guest's page cache
        # until myelin-fw's final sync, so a cut would only ever find the slot untouched. A real
        # update is larger than the dirty limits; make the kernel write dirty data at once.
        dev.sh("echo 4096 > /proc/sys/vm/dirty_background_bytes && "
               "echo 1 > /proc/sys/vm/dirty_expire_centisecs && "
               "echo 10 > /proc/sys/vm/dirty_writeback_centisecs")

    with run.step("boot, fetch the update onto /data, set a marker variable", timeout=150):
        dev.boot()
        wait_network(dev)
        dev.sh(f"wget -q -O /data/update.fw {url} && sync", timeout=60)
        dev.sh("fw_setenv systest_marker survives")
        write_through()

    # The markers are split in printf's format so the terminal's echo of the line never matches.
    apply = ("printf '%s_%s\\n' __APPLY START; "
             "myelin-fw apply -q -d /dev/rootdisk0 -i /data/update.fw -t upgrade; "
             "printf '%s_%s %s\\n' __APPLY DONE $?")

    def check_complete(label):
        slot = running_slot(dev)
        version = running_version(dev)
        env = kv_all(dev)
        if env.get("systest_marker") != "survives":
            raise Failure(f"{label}: the marker variable is gone: {env}")
        if version not in rootfs:
            raise Failure(f"{label}: running unknown version {version!r}")
        if env.get(f"{slot}.nerves_fw_version") != version:
            raise Failure(f"{label}: slot {slot} runs {version} but the environment says "
                          f"{env.get(slot + '.nerves_fw_version')!r}")
        if slot_digest(slot, version) != rootfs[version][1]:
            raise Failure(f"{label}: slot {slot} does not hold the {version} root filesystem")
        # A slot the environment calls valid must hold what it names: `revert`, and GRUB's
        # fallback when the running slot's kernel cannot be loaded, would boot it.
        other = "b" if slot == "a" else "a"
        if env.get(f"{other}.nerves_fw_validated") == "1":
            other_version = env.get(f"{other}.nerves_fw_version")
            if other_version not in rootfs or \
                    slot_digest(other, other_version) != rootfs[other_version][1]:
                raise Failure(f"{label}: slot {other} is marked valid ({other_version}) but does "
                              f"not hold that root filesystem (a cut during its rewrite)")
        return slot, version

    def slot_digest(slot, version):
        size = rootfs[version][0]
        part = {"a": 2, "b": 3}[slot]
        return dev.sh(f"head -c {size} /dev/rootdisk0p{part} | sha256sum", timeout=60).split()[0]

    with run.step("an uninterrupted upgrade, timed", timeout=240):
        dev.machine.send(apply + "\n")
        dev.machine.wait_for(b"__APPLY_START", 30)
        t0 = time.monotonic()
        done = dev.machine.wait_for(rb"__APPLY_DONE (\d+)", 200)
        full = time.monotonic() - t0
        if done.group(1) != b"0":
            raise Failure("the upgrade failed")
        if fw_status(dev) not in ("a->b", "b->a"):
            raise Failure("the upgrade did not arm a trial boot")
        dev.power_cut()
        dev.power_on()
        dev.wait_up(120)
        slot, version = check_complete("after the uninterrupted upgrade")
        if version != new_version:
            raise Failure("the uninterrupted upgrade did not boot the new firmware")
    print(f"    an upgrade takes {full:.2f}s; {cuts} cuts at random points of it (seed {seed})",
          flush=True)

    services = {svc["name"] for svc in init_config(run).get("service", [])}

    def validated(slot):
        """Waits until the running slot is validated: by myelin-update, which validates a trial
        once the critical services are ready, or, in an image without it, by the ops task."""
        if "myelin-update" not in services:
            ops(dev, "validate")
        deadline = time.monotonic() + 60
        while kv(dev, f"{slot}.nerves_fw_validated") != "1":
            if time.monotonic() > deadline:
                raise Failure(f"slot {slot} was not validated within 60s of being ready")
            time.sleep(1)

    outcomes = {"old": 0, "new": 0}
    for i in range(1, cuts + 1):
        with run.step(f"cut {i}/{cuts}", timeout=300):
            t_cut = time.monotonic()
            before = running_slot(dev)
            validated(before)
            write_through()
            # Stratified: cut i falls at a random point of the i-th of `cuts` equal parts of the
            # upgrade, so the cuts cover all of it, the final writes included.
            delay = full * (i - 1 + rng.random()) / cuts
            dev.machine.send(apply + "\n")
            dev.machine.wait_for(b"__APPLY_START", 30)
            time.sleep(delay)
            dev.machine.note(f"power cut {delay:.2f}s into the upgrade")
            dev.power_cut()
            t_boot = time.monotonic()
            dev.power_on()
            dev.wait_up(150)
            t_up = time.monotonic()
            slot, version = check_complete(f"cut {i} at {delay:.2f}s")
            outcome = "old" if slot == before else "new"
            outcomes[outcome] += 1
            print(f"    cut {i}: {delay:.2f}s into the upgrade; booted the {outcome} slot "
                  f"{slot} ({version}) [{t_up - t_boot:.0f}s to ready, "
                  f"{time.monotonic() - t_cut:.0f}s in all]", flush=True)
    print(f"    {outcomes['old']} cuts came back on the old slot, {outcomes['new']} on the new one",
          flush=True)


# The previous boot's records, cut down to what the watchdog scenario looks for (the console
# record alone can be hundreds of KiB).
PREVIOUS_BOOT = ("myelinctl log --previous-boot"
                 " | grep -e '^== ' -e 'myelin-test:' -e 'sysrq triggered crash'"
                 " -e 'stopped by a signal' || true")


@scenario("watchdog", "a hung critical service makes the hardware watchdog reset the device; "
          "the last words of a reset and of a kernel panic survive them (pstore)",
          needs=["myelin-init", "myelinctl"])
def watchdog(run):
    """SIGSTOP on a critical service: myelin-init sees it stopped, stops petting the i6300esb
    watchdog, and the watchdog resets the machine (no clean reboot) within the configured
    timeout, counted from the end of the boot grace period if the hang comes before it.
    The line logged just before the hang is in `myelinctl log --previous-boot` afterwards (the
    console that ramoops kept in RAM across the reset). Then a kernel panic: the kernel reboots
    (panic timeout), and the panic report with the line logged before it is there instead."""
    config = init_config(run)
    critical = [s for s in config.get("service", []) if s.get("critical")]
    if not critical:
        raise Failure("init.toml marks no service critical")
    svc = critical[0]
    wd = config.get("watchdog", {})
    timeout = duration(wd.get("timeout", "30s"))
    grace = duration(wd.get("grace", "0s"))
    dev = run.device()
    with run.step("boot", timeout=120):
        dev.boot()
    with run.step(f"SIGSTOP {svc['name']}", timeout=30):
        exe = os.path.basename(svc["argv"][0])
        pid = dev.sh(f"pidof {exe}").split()[0]
        init_at = float(re.search(r"\[\s*(\d+\.\d+)\] Run /sbin/init",
                                  dev.sh("dmesg | grep 'Run /sbin/init'")).group(1))
        uptime = float(dev.sh("cut -d' ' -f1 /proc/uptime"))
        dev.machine.send(f"kill -STOP {pid}\n")
        stopped = time.monotonic()
        since_hang = dev.machine.position()
    # The watchdog is petted every timeout/2 until the hang (or the grace period's end), and
    # expires one timeout later; the margin covers QEMU's timer and the reset itself.
    limit = max(0.0, grace - (uptime - init_at)) + timeout + 10
    with run.step(f"the watchdog resets the machine within {limit:.0f}s", timeout=limit + 5):
        dev.wait_kernel_start(limit + 5)
        took = time.monotonic() - stopped
        if took > limit:
            raise Failure(f"the reset came {took:.0f}s after the hang, limit {limit:.0f}s")
        if b"reboot: Restarting system" in dev.machine.output_since(since_hang):
            raise Failure("the device rebooted cleanly: the hardware watchdog did not fire")
        print(f"    reset {took:.0f}s after the hang (limit {limit:.0f}s)", flush=True)
    with run.step("the device comes back up and knows the watchdog reset it", timeout=150):
        dev.machine.wait_for(READY, 140)
        dev.shell.attach(30)
        status = dev.sh("myelinctl status")
        if "last boot: watchdog" not in status:
            raise Failure(f"myelin-init does not report a watchdog reset:\n{status}")
    hang_words = f"{svc['name']} was stopped by a signal"
    with run.step("the console and the log before the reset are the previous boot's records",
                  timeout=30):
        previous = dev.sh(PREVIOUS_BOOT)
        for want in ("== console-ramoops-0", "== pmsg-ramoops-0"):
            if want not in previous:
                raise Failure(f"`myelinctl log --previous-boot` lacks {want!r}:\n"
                              f"{previous[-3000:]}")
        if not re.search(rf"\] init: \w+: {re.escape(hang_words)}", previous):
            raise Failure(f"PID 1's line about the hang is not kept:\n{previous[-3000:]}")
        if "dmesg-ramoops" in previous:
            raise Failure(f"a watchdog reset is reported as a panic:\n{previous[-3000:]}")
    with run.step("a kernel panic reboots the device", timeout=180):
        panic_words = f"myelin-test: last words before the panic {random.randrange(1 << 30)}"
        dev.sh(f"echo '<4>{panic_words}' > /dev/kmsg")
        since_panic = dev.machine.position()
        dev.machine.send("echo c > /proc/sysrq-trigger\n")
        dev.wait_kernel_start(120)
        if b"Kernel panic - not syncing" not in dev.machine.output_since(since_panic):
            raise Failure("no kernel panic on the console")
        dev.machine.wait_for(READY, 140)
        dev.shell.attach(30)
    with run.step("the panic report and the line before it are the previous boot's record",
                  timeout=30):
        previous = dev.sh(PREVIOUS_BOOT)
        for want in ("== dmesg-ramoops-0 (kernel log at a panic or oops)",
                     "sysrq triggered crash", panic_words):
            if want not in previous:
                raise Failure(f"`myelinctl log --previous-boot` lacks {want!r}:\n"
                              f"{previous[-3000:]}")
        if hang_words in previous:
            raise Failure("the record of two boots ago is shown as the previous boot's")
        warned = dev.sh("myelinctl log init | grep -c 'ended in a kernel panic' || true")
        if warned.strip() in ("", "0"):
            raise Failure("myelin-init does not warn that the previous boot panicked")


def local_check_overlay(run):
    """A rootfs overlay whose net.toml lets the internet check use targets inside the
    interface's subnet: the only host a QEMU guest can reach is its gateway, 10.0.2.2."""
    overlay = os.path.join(run.images.root, "overlay-local-check")
    shutil.rmtree(overlay, ignore_errors=True)
    os.makedirs(os.path.join(overlay, "etc/myelin"))
    with open(os.path.join(run.images.target_dir(), "etc/myelin/net.toml"), encoding="utf-8") as f:
        net = f.read()
    net, n = re.subn(r"(?m)^\[connectivity\]$", "[connectivity]\ncheck_local = true", net)
    if n != 1:
        raise Failure("net.toml has no [connectivity] section")
    with open(os.path.join(overlay, "etc/myelin/net.toml"), "w", encoding="utf-8") as f:
        f.write(net)
    return overlay


class ChronyServer:
    """Debian's chronyd serving its own clock over NTP on 127.0.0.1 (an unprivileged port, its
    configuration, pid and drift files in a temporary directory; it never sets the host's
    clock). The guest reaches it as 10.0.2.2:port through QEMU's user network."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="myelin-chrony-")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        conf = os.path.join(self.dir, "chrony.conf")
        with open(conf, "w", encoding="utf-8") as f:
            f.write(f"port {self.port}\nbindaddress 127.0.0.1\nallow 127.0.0.1\n"
                    f"local stratum 8\ncmdport 0\npidfile {self.dir}/chronyd.pid\n"
                    f"driftfile {self.dir}/drift\n")
        # -x: serve, never touch the host's clock; -d: foreground, log to stderr; as the user
        # running the test (-U: root is not needed without clock control).
        user = ["-u", "root"] if os.geteuid() == 0 else ["-U"]
        self.log = open(os.path.join(self.dir, "chronyd.log"), "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(["chronyd", "-x", "-d", *user, "-f", conf],
                                     stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while not self.answers():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise Failure(f"chronyd did not answer on 127.0.0.1:{self.port} "
                              f"(log: {self.dir}/chronyd.log)")
            time.sleep(0.2)

    def answers(self):
        """Whether chronyd answers a client request as a synchronized server."""
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(0.5)
            try:
                s.sendto(b"\x23" + bytes(47), ("127.0.0.1", self.port))
                data = s.recv(128)
            except OSError:
                return False
        return len(data) >= 48 and data[0] & 7 == 4 and data[0] >> 6 != 3 and 0 < data[1] < 16

    def stop(self):
        """Stops chronyd and removes its directory."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


# The network scenario's guest boots with its RTC this far ahead of the host's clock.
RTC_AHEAD = 3 * 86400


def check_time(run, dev, ntp):
    """The guest booted RTC_AHEAD ahead; pointed at the host's chronyd, myelin-time reports
    synchronized, the clock is the host's (stepped back, above the build-time floor), and the
    RTC and the time file (the next boot's floor) carry the corrected time."""
    with run.step("the clock: wrong at boot, synchronized from the host's chrony", timeout=120):
        started = time.monotonic()
        skew = int(dev.sh("date +%s")) - time.time()
        if skew < RTC_AHEAD - 3600:
            raise Failure(f"the guest's clock is only {skew:.0f}s ahead: the test would prove "
                          f"nothing")
        before = json.loads(dev.sh("myelin-time status"))
        if before.get("synchronized"):
            raise Failure(f"myelin-time reports synchronized before any server answered: {before}")
        dev.sh(f"myelin-time set-servers 10.0.2.2:{ntp.port}")
        deadline = time.monotonic() + 100
        while True:
            status = json.loads(dev.sh("myelin-time status"))
            if status.get("synchronized"):
                break
            if time.monotonic() > deadline:
                raise Failure(f"myelin-time never reported synchronized: {status}")
            time.sleep(1)
        # Read with the host's clock around it: the console round trip bounds the error.
        t0 = time.time()
        guest = float(dev.sh("date +%s"))
        t1 = time.time()
        if not t0 - 2 <= guest <= t1 + 2:
            raise Failure(f"synchronized, but the guest's clock is {guest - t1:+.1f}s off")
        if f"10.0.2.2:{ntp.port}" not in status.get("servers", []):
            raise Failure(f"the server set is not in the status: {status}")
        line = [ln for ln in dev.sh("myelinctl status").splitlines() if ln.startswith("time:")]
        if not line or not line[0].startswith("time: synchronized"):
            raise Failure(f"myelinctl status does not say synchronized: {line}")
        rtc = int(dev.sh("cat /sys/class/rtc/rtc0/since_epoch"))
        if abs(rtc - time.time()) > 10:
            raise Failure(f"the RTC was not written after the sync: {rtc - time.time():+.0f}s off")
        saved = int(dev.sh("stat -c %Y /data/myelin/time"))
        if abs(saved - time.time()) > 10:
            raise Failure(f"the time file was not saved after the sync: "
                          f"{saved - time.time():+.0f}s off")
        print(f"    clock: {skew:+.0f}s at boot, synchronized by {status.get('client')} "
              f"(stratum {status.get('stratum')}, offset {status.get('offset'):+.0f}s); "
              f"{line[0]}; the clock's checks took {time.monotonic() - started:.1f}s", flush=True)


@scenario("network", "DHCP on QEMU's network; myelin-net reports internet via a host TCP check; "
          "a guest booted 3 days ahead gets the host's time from chrony through myelin-time",
          needs=["myelin-init", "myelin-net", "myelin-time", "myelinctl"])
def network(run):
    """eth0 gets its DHCP lease from QEMU's user network and myelin-net reports it with the
    lease's address and router. With the internet check aimed at a TCP server on the host, the
    interface is reported as `internet`, and the server saw the check's connections. On the same
    boot, the guest's RTC starts 3 days ahead; pointed at chronyd on the host, myelin-time
    reports synchronized and the guest's clock, RTC and time file are the host's time.

    The image differs from the product in one line of net.toml, check_local = true: QEMU's host
    is the guest's gateway, inside its subnet, where the product deliberately does not look."""
    image = run.images.build("local-check", run.images.BASE_VERSION, [local_check_overlay(run)])
    listener = TcpListener()
    ntp = ChronyServer()
    try:
        ahead = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(time.time() + RTC_AHEAD))
        dev = run.device(image=os.path.join(image, "x86_64.img"), rtc_base=ahead)
        with run.step("boot", timeout=120):
            dev.boot()
        with run.step("a DHCP lease on eth0, reported by myelin-net", timeout=90):
            deadline = time.monotonic() + 80
            while True:
                eth0 = json.loads(dev.sh("myelin-net status eth0"))
                if any(a.startswith("10.0.2.15/") for a in eth0.get("addresses", [])):
                    break
                if time.monotonic() > deadline:
                    raise Failure(f"myelin-net reports no DHCP address on eth0: {eth0}")
                time.sleep(1)
            if not eth0.get("lower_up") or eth0.get("connection") not in ("lan", "internet"):
                raise Failure(f"eth0 is up with an address but reported as {eth0}")
            if "10.0.2.2" not in json.dumps(eth0.get("dhcp_options", {})):
                raise Failure(f"the lease's router 10.0.2.2 is not in the DHCP options: {eth0}")
        with run.step("the check, aimed at the host, finds the internet", timeout=90):
            dev.sh(f"myelin-net check-hosts --temporary 10.0.2.2:{listener.port}")
            accepted_before = listener.accepted
            deadline = time.monotonic() + 80
            while True:
                eth0 = json.loads(dev.sh("myelin-net status eth0"))
                if eth0.get("connection") == "internet" and listener.accepted > accepted_before:
                    break
                if time.monotonic() > deadline:
                    raise Failure(f"eth0 never reported internet through the host's server "
                                  f"({listener.accepted - accepted_before} connections): {eth0}")
                time.sleep(1)
            print(f"    eth0: internet; the host's server took "
                  f"{listener.accepted - accepted_before} check connection(s)", flush=True)
        check_time(run, dev, ntp)
    finally:
        listener.stop()
        ntp.stop()


RUST_DIR = os.path.join(os.path.dirname(os.path.dirname(BIN_DIR)))
# Where the hw scenario puts the myelin crate's QEMU tests in its image (not a product path).
QEMU_TESTS = "/usr/lib/myelin-tests/myelin-qemu"


def qemu_tests_overlay(run):
    """A rootfs overlay holding the myelin crate's tests/qemu.rs built for the guest (the x86_64
    board runs the build machine's glibc); returns (overlay, number of tests it has).

    A debug build, as `cargo test` makes: the unit tests have built its dependencies already."""
    out = subprocess.run(
        ["cargo", "test", "--locked", "-p", "myelin", "--features", "qemu-tests",
         "--test", "qemu", "--no-run", "--message-format=json-render-diagnostics"],
        cwd=RUST_DIR, check=True, stdout=subprocess.PIPE, text=True).stdout
    exe = None
    for line in out.splitlines():
        msg = json.loads(line)
        if msg.get("reason") == "compiler-artifact" and msg.get("executable") \
                and msg["target"]["name"] == "qemu":
            exe = msg["executable"]
    if exe is None:
        raise Failure("cargo built no executable for myelin's tests/qemu.rs")
    listing = subprocess.run([exe, "--list"], check=True, stdout=subprocess.PIPE, text=True).stdout
    count = sum(1 for line in listing.splitlines() if line.endswith(": test"))
    overlay = os.path.join(run.dir, "overlay-qemu-tests")
    shutil.rmtree(overlay, ignore_errors=True)
    dest = overlay + QEMU_TESTS
    os.makedirs(os.path.dirname(dest))
    # Without its debug information the binary is a tenth of the size in the squashfs.
    subprocess.run(["strip", "--strip-debug", "-o", dest, exe], check=True)
    return overlay, count


# configfs, where gpio-sim chips are made (myelin-init does not mount it).
MOUNT_CONFIGFS = ("grep -q ' /sys/kernel/config configfs ' /proc/mounts"
                  " || mount -t configfs configfs /sys/kernel/config")
# A gpio-sim chip made from the shell, as a developer would, for `myelinctl hw` to list.
MAKE_SIM = " && ".join([
    "(" + MOUNT_CONFIGFS + ")",
    "d=/sys/kernel/config/gpio-sim/systest",
    "mkdir $d $d/bank0 $d/bank0/line2",
    "echo systest-bank > $d/bank0/label",
    "echo 4 > $d/bank0/num_lines",
    "echo status-led > $d/bank0/line2/name",
    "echo 1 > $d/live",
])


# The sensor-node example product (examples/sensor-node) in the hw image: its overlay (init.d
# drop-in, settings), then the test's settings over them.
EXAMPLE_DIR = os.path.join(os.path.dirname(RUST_DIR), "examples", "sensor-node")
# Where the app serves its page in the guest (forwarded from a free host port).
SENSOR_NODE_HTTP = 8080
SENSOR_NODE_TOPIC = "sensor-node/temperature"
# One broker port for the whole runner: it is written into the image.
_BROKER_PORT = []


def free_port():
    """A TCP port free on the host's loopback now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def broker_port():
    """The port the test's Mosquitto listens on, chosen once per runner."""
    if not _BROKER_PORT:
        _BROKER_PORT.append(free_port())
    return _BROKER_PORT[0]


def sensor_node_overlay(run):
    """The test's /etc/sensor-node.toml: i2c-stub's chip, gpio-sim's line, the host's broker
    (QEMU's user network reaches the host's loopback at 10.0.2.2), a reading a second."""
    overlay = os.path.join(run.images.root, "overlay-sensor-node-test")
    shutil.rmtree(overlay, ignore_errors=True)
    os.makedirs(os.path.join(overlay, "etc"))
    with open(os.path.join(overlay, "etc/sensor-node.toml"), "w", encoding="utf-8") as f:
        f.write(f"""bus = "SMBus stub driver"
address = "0x48"
led = "status-led"
broker = "10.0.2.2"
port = {broker_port()}
topic = "{SENSOR_NODE_TOPIC}"
interval = "1s"
http = "0.0.0.0:{SENSOR_NODE_HTTP}"
""")
    return overlay


def hw_image(run):
    """The hw image: the crate's QEMU tests, and the sensor-node example as a product adds it
    (its overlay with the test's settings over it); returns (images dir, number of tests)."""
    overlay, count = qemu_tests_overlay(run)
    example = os.path.join(EXAMPLE_DIR, "rootfs_overlay")
    image = run.images.build("hw", run.images.BASE_VERSION,
                             [overlay, example, sensor_node_overlay(run)])
    return image, count


def hw_boot(dev):
    """Boots the hw image, then stops sensor-node: it reads i2c-stub's registers every second,
    which would race the crate's tests (the stub's byte pointer); sensor-node starts it again."""
    dev.boot()
    if "i2c_stub.chip_addr=0x48" not in dev.sh("cat /proc/cmdline"):
        raise Failure("the test kernel's command line lacks i2c_stub.chip_addr")
    dev.sh(MOUNT_CONFIGFS)
    dev.sh("myelinctl stop sensor-node")


@scenario("hw", "the myelin crate's GPIO, I2C and UART on gpio-sim, i2c-stub and a UART pair; "
          "a hot-plugged PCI device's module and D-Bus signal",
          needs=["myelin-init", "myelinctl", "myelin-uevent"])
def hw(run):
    """The myelin crate's hardware tests (rust/crates/myelin/tests/qemu.rs) run in the guest on
    real drivers, sharing one boot: a GPIO line driven by the crate reads back through gpio-sim;
    edges from a simulated input arrive with kernel timestamps, also on tokio; a TMP102
    embedded-hal driver and i2cget/i2cset read and write i2c-stub's registers through the crate;
    bytes go round between ttyS1 and ttyS2, whose wires the host joins; a missing line, a busy
    line, a missing bus and a missing port give errors that name them. Then `myelinctl hw`
    lists that hardware and probes the stub's bus. Then a virtio-serial card is plugged in
    through QEMU's monitor (hotplug_check).

    The image also holds the sensor-node example (stopped during these tests: it reads the
    stub); the device is handed over to the sensor-node scenario, which needs the same image
    and the gpio-sim chip made here, so that the two share one boot.

    The test kernel has gpio-sim, i2c-stub and configfs from tests/system/linux-test.fragment
    (never in a product kernel), with i2c_stub.chip_addr=0x48 on its built-in command line."""
    with run.step("build the crate's QEMU tests and an image with them", timeout=900):
        image, count = hw_image(run)
    web_port = free_port()
    dev = run.device(image=os.path.join(image, "x86_64.img"), uart_pair=True,
                     net_forwards=[("tcp", web_port, SENSOR_NODE_HTTP)], hotplug=True)
    with run.step("boot", timeout=120):
        hw_boot(dev)
    with run.step(f"the {count} hardware tests pass in the guest", timeout=300):
        status, out = dev.sh(f"MYELIN_TEST_UARTS=ttyS1,ttyS2 {QEMU_TESTS} --test-threads=1 2>&1",
                             timeout=290, check=False)
        summary = re.search(r"test result: (\w+)\. (\d+) passed; (\d+) failed", out)
        if status != 0 or not summary or summary.group(1) != "ok" \
                or int(summary.group(2)) != count:
            raise Failure(f"the crate's QEMU tests did not all pass ({count} expected):\n{out}")
        print(f"    {summary.group(0)}", flush=True)
    with run.step("myelinctl hw lists the hardware and probes the bus", timeout=60):
        dev.sh(MAKE_SIM)
        listing = dev.sh("myelinctl hw")
        for expect in ("SMBus stub driver", "systest-bank", "status-led", "ttyS1", "ttyS2"):
            if expect not in listing:
                raise Failure(f"myelinctl hw does not list {expect!r}:\n{listing}")
        inventory = json.loads(dev.sh("myelinctl --json hw uart"))
        if set(inventory) != {"uart"} or not any(p["console"] for p in inventory["uart"]):
            raise Failure(f"myelinctl --json hw uart: {inventory}")
        detect = dev.sh("myelinctl hw --detect 'SMBus stub driver'")
        if re.findall(r"^\s*(0x[0-9a-f]{2})", detect, re.M) != ["0x48"]:
            raise Failure(f"probing the stub's bus did not find exactly 0x48:\n{detect}")
        status, out = dev.sh("myelinctl hw --detect i2c-99 2>&1", check=False)
        if status == 0 or "no I2C bus i2c-99" not in out:
            raise Failure(f"a missing bus is not refused by name ({status}): {out}")
    hotplug_check(run, dev)
    # The sensor-node scenario goes on with this boot (its gpio-sim chip has the LED line).
    run.hand_over("hw", dev, web_port=web_port)


# virtio-serial's device alias: virtio device 3 (console) of vendor 0x1af4; the test kernel
# builds its driver, virtio_console, as a module (tests/system/linux-test.fragment).
VIRTIO_CONSOLE_ALIAS = "virtio:d00000003v00001AF4"


def hotplug_check(run, dev):
    """On the hw boot: a virtio-serial card plugged into the running machine through QEMU's
    monitor gets its driver module loaded by myelin-uevent (modalias, modules.alias, busybox
    modprobe), and its DeviceAdded signal reaches a subscriber on the device's bus."""
    with run.step("a hot-plugged device gets its module and reaches a D-Bus subscriber",
                  timeout=180):
        release = dev.sh("uname -r")
        # The image carries the module and depmod's alias index (build-kernel, build-image).
        dev.sh(f"grep -q ' virtio_console$' /lib/modules/{release}/modules.alias")
        if re.search(r"^virtio_console ", dev.sh("cat /proc/modules"), re.M):
            raise Failure("virtio_console is loaded before its device was plugged in")
        # The subscriber runs in the background of the console shell; --new: only a signal
        # counts, not a device already in the table.
        dev.sh(f"myelin-uevent wait --new --subsystem virtio --modalias {VIRTIO_CONSOLE_ALIAS}"
               " --timeout 150 >/tmp/hotplug.out 2>&1 & echo $! >/tmp/hotplug.pid")
        wait_until("the subscriber to subscribe",
                   lambda: "subscribed" in dev.sh("cat /tmp/hotplug.out"), timeout=60)
        dev.hotplug.device_add("virtio-serial-pci", "hot0")
        status, _ = dev.sh("wait $(cat /tmp/hotplug.pid)", timeout=160, check=False)
        out = dev.sh("cat /tmp/hotplug.out")
        if status != 0:
            raise Failure(f"the subscriber saw no DeviceAdded for the virtio console ({status}):"
                          f"\n{out}\n{dev.sh('myelinctl log 2>&1 | tail -20')}")
        added = out.splitlines()[-1].split()
        if added[0] != "virtio" or added[-1] != VIRTIO_CONSOLE_ALIAS:
            raise Failure(f"unexpected DeviceAdded: {out}")
        # The signal follows the modprobe call: the module is in, and bound to the device.
        if not re.search(r"^virtio_console ", dev.sh("cat /proc/modules"), re.M):
            raise Failure("DeviceAdded came but virtio_console is not loaded")
        dev.sh(f"test -e /sys/bus/virtio/drivers/virtio_console/{added[1].rsplit('/', 1)[-1]}")
        print(f"    {added[1]} -> virtio_console", flush=True)


class Mosquitto:
    """Debian's Mosquitto on the host's loopback (the guest reaches it at 10.0.2.2), with
    persistence: a durable subscriber's session and queued messages survive a restart, so
    stopping the broker loses nothing on the test's side."""

    def __init__(self, port, workdir):
        self.port = port
        self.workdir = workdir
        self.proc = None
        os.makedirs(workdir, exist_ok=True)
        self.conf = os.path.join(workdir, "mosquitto.conf")
        with open(self.conf, "w", encoding="utf-8") as f:
            f.write(f"""listener {port} 127.0.0.1
allow_anonymous true
user root
persistence true
persistence_location {workdir}/
log_dest file {workdir}/mosquitto.log
log_type all
""")

    def start(self, timeout=30):
        """Starts the broker and waits until it accepts connections."""
        self.proc = subprocess.Popen(["mosquitto", "-c", self.conf],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise Failure(f"mosquitto exited ({self.proc.returncode}); see "
                              f"{self.workdir}/mosquitto.log")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise Failure(f"mosquitto does not listen on port {self.port}") from None
                time.sleep(0.2)

    def stop(self):
        """Stops the broker cleanly (it saves its persistent state)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


class Subscriber:
    """mosquitto_sub with a durable session (QoS 1, clean session off) appending every message
    on the topic to a file, one payload a line."""

    ID = "systest-subscriber"

    def __init__(self, port, path):
        self.port = port
        self.path = path
        self.proc = None
        open(path, "w", encoding="utf-8").close()

    def ensure_running(self):
        """Starts mosquitto_sub if it is not running (it ends when the broker goes away)."""
        if self.proc is not None and self.proc.poll() is None:
            return
        out = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 (the child keeps it)
        self.proc = subprocess.Popen(
            ["mosquitto_sub", "-h", "127.0.0.1", "-p", str(self.port), "-q", "1", "-c",
             "-i", self.ID, "-t", SENSOR_NODE_TOPIC], stdout=out, stderr=subprocess.DEVNULL)
        out.close()

    def messages(self):
        """Every payload received so far, parsed (JSON objects)."""
        with open(self.path, encoding="utf-8") as f:
            lines = [line for line in f.read().splitlines() if line.strip()]
        out = []
        for line in lines:
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise Failure(f"a message on {SENSOR_NODE_TOPIC} is not JSON: {line!r}") from e
        return out

    def readings(self):
        """The app's readings among the messages (the test's probes left out)."""
        return [m for m in self.messages() if "seq" in m]

    def stop(self):
        """Ends mosquitto_sub."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)


def wait_until(what, check, timeout, interval=0.5):
    """Calls check() until it returns something true (returned), failing after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() > deadline:
            raise Failure(f"{what}: not after {timeout}s")
        time.sleep(interval)


def service_status(dev, name):
    """A service's node in `myelinctl --json status`."""
    def find(node):
        if isinstance(node, dict):
            if node.get("name") == name and node.get("kind") == "service":
                return node
            children = list(node.values())
        elif isinstance(node, list):
            children = node
        else:
            return None
        for child in children:
            found = find(child)
            if found:
                return found
        return None
    node = find(json.loads(dev.sh("myelinctl --json status")))
    if node is None:
        raise Failure(f"myelinctl status has no service {name}")
    return node


# The gpio-sim line MAKE_SIM names status-led, as its simulated chip sees it.
LED_VALUE = ("d=/sys/kernel/config/gpio-sim/systest; "
             "cat /sys/devices/platform/$(cat $d/dev_name)/$(cat $d/bank0/chip_name)/"
             "sim_gpio2/value")
STUB_BUS = ("for d in /sys/bus/i2c/devices/i2c-*; do "
            "if grep -qx 'SMBus stub driver' $d/name; then echo ${d##*-}; fi; done")


def set_temperature(dev, bus, word):
    """Writes i2c-stub's temperature register (pointer 0) as an SMBus word: a TMP102 sends
    MSB first, which an SMBus word carries in its low byte (23.5 °C = 0x178 << 4 -> 0x8017)."""
    dev.sh(f"i2cset -y {bus} 0x48 0x00 0x{word:04x} w")


def page_status(web_port):
    """The app's /status.json through the forwarded port, or None while it does not answer."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{web_port}/status.json",
                                    timeout=5) as r:
            return json.loads(r.read())
    except (OSError, ValueError):
        return None


def log_lines(dev, service):
    """A service's lines in PID 1's log ring."""
    return dev.sh(f"myelinctl log {service}")


@scenario("sensor-node", "the example product: I2C sensor, LED, MQTT to a host broker, its page "
          "in Chromium, restarts, a broker outage without loss",
          needs=["myelin-init", "myelinctl", "sensor-node"])
def sensor_node(run):
    """examples/sensor-node in the hw image, on the hw scenario's boot when that ran just before
    (its own otherwise): i2c-stub holds the temperature, gpio-sim the LED line, Debian's
    Mosquitto runs on the host. The app reads 23.5 °C and its readings arrive on the broker;
    it is ready and validates the firmware once it has published; the LED line toggles; a
    value outside the sensor's range is logged and never published; the page, through a
    forwarded port, renders in headless Chromium with the reading in its DOM; SIGKILL makes
    myelin-init restart it; with the broker stopped the app buffers, and once it is back every
    buffered reading arrives (a durable subscriber on a persistent broker sees all sequence
    numbers from 1 on)."""
    taken = run.take_over("hw")
    if taken is not None:
        dev, info = taken
        web_port = info["web_port"]
        print("    (on the hw scenario's boot)", flush=True)
    else:
        with run.step("build the hw image", timeout=900):
            image, _ = hw_image(run)
        web_port = free_port()
        dev = run.device(image=os.path.join(image, "x86_64.img"),
                         net_forwards=[("tcp", web_port, SENSOR_NODE_HTTP)])
        with run.step("boot", timeout=120):
            hw_boot(dev)
            dev.sh(MAKE_SIM)
    broker = Mosquitto(broker_port(), os.path.join(run.dir, "mosquitto"))
    sub = Subscriber(broker.port, os.path.join(run.dir, "messages.jsonl"))
    try:
        with run.step("Mosquitto on the host and a durable subscriber", timeout=60):
            broker.start()
            sub.ensure_running()

            def probe_arrived():
                """The subscription is in place once a probe published after it arrives."""
                subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(broker.port),
                                "-q", "1", "-t", SENSOR_NODE_TOPIC, "-m", '{"probe": 1}'],
                               check=True)
                return sub.messages()
            wait_until("the subscriber gets a probe", probe_arrived, timeout=30, interval=1)
            bus = dev.sh(STUB_BUS)
            if not bus.isdigit():
                raise Failure(f"no single i2c-stub bus: {bus!r}")
        with run.step("sensor-node reads 23.5 °C, gets ready and publishes", timeout=120):
            set_temperature(dev, bus, 0x8017)
            wait_network(dev)
            dev.sh("myelinctl start sensor-node")
            wait_until("a 23.5 °C reading on the broker",
                       lambda: any(r["celsius"] == 23.5 for r in sub.readings()), timeout=100)
            node = service_status(dev, "sensor-node")
            if node["state"] != "running" or not node["ready"]:
                raise Failure(f"sensor-node is not running and ready: {node}")
            print(f"    {len(sub.readings())} reading(s) on the broker", flush=True)
        with run.step("the firmware is validated after the first publish", timeout=60):
            wait_until("'firmware validated' in sensor-node's log",
                       lambda: "firmware validated" in log_lines(dev, "sensor-node"), timeout=50)
        with run.step("the status LED line toggles", timeout=60):
            seen = set()
            wait_until("the LED line both high and low",
                       lambda: seen.add(dev.sh(LED_VALUE)) or seen >= {"0", "1"},
                       timeout=50, interval=0.3)
        with run.step("a value outside the sensor's range is logged, never published",
                      timeout=90):
            set_temperature(dev, bus, 0xf07f)  # 0x7FF: 127.9375 °C, the register's maximum
            wait_until("the rejection in sensor-node's log",
                       lambda: "rejected, not published: sensor value 127.9375"
                       in log_lines(dev, "sensor-node"), timeout=30)
            set_temperature(dev, bus, 0x8017)
            count = len(sub.readings())
            wait_until("readings again after the bad value",
                       lambda: len(sub.readings()) > count + 1, timeout=30)
            bad = [r for r in sub.readings() if not -40 <= r["celsius"] <= 125]
            if bad:
                raise Failure(f"rejected values reached the broker: {bad}")
        with run.step("the page renders in headless Chromium with the reading", timeout=150):
            url = f"http://127.0.0.1:{web_port}/"
            wait_until("the page answers through the forwarded port",
                       lambda: page_status(web_port), timeout=30)
            dom = subprocess.run(
                ["chromium", "--headless", "--no-sandbox", "--disable-gpu",
                 "--disable-dev-shm-usage", "--dump-dom", url],
                check=True, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                timeout=120).stdout
            for expect in ('<span id="celsius">23.50</span>', "(connected)",
                           f'<td id="firmware">{run.images.BASE_VERSION} (slot a)</td>'):
                if expect not in dom:
                    raise Failure(f"the page's DOM lacks {expect!r}:\n{dom}")
            with open(os.path.join(run.dir, "page.html"), "w", encoding="utf-8") as f:
                f.write(dom)
        with run.step("killed, sensor-node is restarted by its supervisor", timeout=90):
            before = service_status(dev, "sensor-node")
            mark = len(sub.readings())
            dev.sh(f"kill -9 {before['pid']}")

            def restarted():
                node = service_status(dev, "sensor-node")
                return node["pid"] not in (None, before["pid"]) and node["ready"] \
                    and node["restarts"] > before["restarts"] and node
            node = wait_until("a new, ready sensor-node process", restarted, timeout=60)
            print(f"    pid {before['pid']} -> {node['pid']}, restarts {node['restarts']}, "
                  f"last exit: {node.get('last_exit')}", flush=True)

        def new_seqs():
            """Sequence numbers of the restarted process's readings (it counts from 1)."""
            after = [r["seq"] for r in sub.readings()[mark:]]
            return after[after.index(1):] if 1 in after else []
        with run.step("the broker stops and comes back: no buffered reading is lost",
                      timeout=240):
            wait_until("a reading of the restarted process", new_seqs, timeout=30)
            broker.stop()
            status = wait_until(
                "sensor-node buffering while the broker is away",
                lambda: (s := page_status(web_port)) and not s["broker_connected"]
                and s["buffered"] >= 5 and s, timeout=60)
            waiting = status["current"]["seq"]
            print(f"    broker away: {status['buffered']} reading(s) buffered, "
                  f"up to #{waiting}", flush=True)
            broker.start()
            sub.ensure_running()
            wait_until(f"every reading up to #{waiting} on the broker",
                       lambda: max(new_seqs(), default=0) >= waiting, timeout=120)
            seqs = set(new_seqs())
            top = max(seqs)
            missing = sorted(set(range(1, top + 1)) - seqs)
            if missing:
                raise Failure(f"readings lost across the outage: {missing}")
            print(f"    readings 1..{top} all on the broker after the outage "
                  f"({len(new_seqs()) - len(seqs)} duplicate(s))", flush=True)
    finally:
        sub.stop()
        broker.stop()
