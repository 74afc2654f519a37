"""The fleet scenario: a Myelin device on a NervesHub server, updated by it (issue 16's proof).

The server is the crate's NervesHub stand-in (rust/crates/myelin-hub/tests/support, written
from the protocol as nerves_hub_web implements it; the real server's Elixir dependencies cannot
be fetched here), run as a host program (examples/standin.rs) that prints what it sees as JSON
lines and pushes what the test writes to it. The device runs the real myelin-hub, myelin-update
and myelin-kv, with a firmware that configures the client: /etc/myelin/hub.toml (the server at
10.0.2.2, the host as QEMU's user network shows it; mTLS with a device certificate from the
stand-in's test CA) and the init.d drop-in that starts it.
"""

import json
import os
import queue
import shutil
import subprocess
import threading
import time

from harness import Failure, scenario
from scenarios import BIN_DIR, RUST_DIR, free_port, running_slot, running_version, \
    update_status

STANDIN = os.path.join(os.path.dirname(BIN_DIR), "release", "examples", "standin")
# One port for the whole runner: it is written into the images.
_HUB_PORT = []


def hub_port():
    """The port the stand-in listens on, chosen once per runner."""
    if not _HUB_PORT:
        _HUB_PORT.append(free_port())
    return _HUB_PORT[0]


class StandIn:
    """The NervesHub stand-in program: its events, read on a thread; pushes to the device."""

    def __init__(self, directory, port):
        subprocess.run(["cargo", "build", "--release", "--locked", "-p", "myelin-hub",
                        "--example", "standin"], cwd=RUST_DIR, check=True)
        self.dir = directory
        self.log = open(os.path.join(directory, "standin.log"), "w", encoding="utf-8")  # noqa: SIM115
        self.proc = subprocess.Popen([STANDIN, directory, str(port)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self.log, text=True,
                                     bufsize=1)
        self.events = queue.Queue()
        if self.proc.stdout.readline().strip() != "listening":
            raise Failure("the NervesHub stand-in did not start")
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            self.log.write(line)
            self.log.flush()
            self.events.put(json.loads(line))

    def wait(self, what, pick, timeout):
        """Waits for an event pick(event) accepts (returns its value), skipping others."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise Failure(f"the NervesHub stand-in saw no {what} within {timeout:.0f}s")
            try:
                event = self.events.get(timeout=left)
            except queue.Empty:
                continue
            value = pick(event)
            if value is not None:
                return value

    def frame(self, event, timeout, topic="device"):
        """Waits for a device frame; returns its payload."""
        return self.wait(f"'{event}' on {topic}", lambda e: e["payload"] if e.get("kind") == "frame"
                         and e["topic"] == topic and e["event"] == event else None, timeout)

    def push(self, event, payload):
        """Pushes an event on the device channel of the latest socket."""
        self.proc.stdin.write(json.dumps([event, payload]) + "\n")
        self.proc.stdin.flush()

    def stop(self):
        """Ends the program."""
        self.proc.kill()
        self.proc.wait()
        self.log.close()


def fleet_overlay(run, standin_dir):
    """The product's files for a device on the stand-in: hub.toml, the device's certificate and
    key (0600), the stand-in's CA, and the init.d drop-in that starts myelin-hub."""
    overlay = os.path.join(run.images.root, "overlay-fleet")
    shutil.rmtree(overlay, ignore_errors=True)
    hub = os.path.join(overlay, "etc/myelin/hub")
    os.makedirs(hub)
    os.makedirs(os.path.join(overlay, "etc/myelin/init.d"))
    for name in ("ca.pem", "device.pem", "device-key.pem"):
        shutil.copy(os.path.join(standin_dir, name), os.path.join(hub, name))
    os.chmod(os.path.join(hub, "device-key.pem"), 0o600)
    with open(os.path.join(overlay, "etc/myelin/hub.toml"), "w", encoding="utf-8") as f:
        f.write(f"""# tests/system: the NervesHub stand-in on the host
url = "wss://10.0.2.2:{hub_port()}"
server_ca = "/etc/myelin/hub/ca.pem"
heartbeat = "10s"
reboot_after_update = true

[auth]
kind = "certificate"
certificate = "/etc/myelin/hub/device.pem"
key = "/etc/myelin/hub/device-key.pem"
""")
    with open(os.path.join(overlay, "etc/myelin/init.d/myelin-hub.toml"), "w",
              encoding="utf-8") as f:
        f.write("""[[service]]
name = "myelin-hub"
supervisor = "system"
argv = ["/usr/bin/myelin-hub", "daemon"]
create_dirs = ["/data/myelin/hub", "/run/myelin"]
optional = true
""")
    return overlay


def firmware_meta(images_dir):
    """The `firmware_meta` NervesHub sends for a .fw: what its meta.conf says."""
    out = subprocess.run([os.path.join(BIN_DIR, "myelin-fw"), "-m", "-i",
                          os.path.join(images_dir, "x86_64.fw")], check=True,
                         stdout=subprocess.PIPE, text=True).stdout
    meta = dict(line.partition("=")[::2] for line in out.splitlines())
    return {k: meta.get(f"meta-{k}", "").strip('"') for k in
            ("uuid", "version", "platform", "architecture", "product", "author", "description",
             "vcs_identifier", "misc")}


@scenario("fleet", "a device joins the NervesHub stand-in, refuses a forged update, installs the "
          "one the server sends, reboots, validates and rejoins with the new version",
          needs=["myelin-init", "myelin-kv", "myelin-fw", "myelin-update", "myelin-hub"])
def fleet(run):
    """myelin-hub joins with the running firmware's metadata; an update whose .fw is signed by a
    key the device does not have is refused and reported failed, changing nothing; the server's
    next update is downloaded by myelin-update over HTTP with progress reported, the device
    reboots into it, validates it, tells the server, and joins again reporting the new version."""
    standin = StandIn(run.dir, hub_port())
    run.servers.append(standin)
    overlay = fleet_overlay(run, run.dir)
    images = run.images
    base = images.build("fleet", images.BASE_VERSION, [overlay])
    new_version = "2.0.0-fleet"
    new = images.build("fleet-update", new_version, [overlay])
    forged = os.path.join(run.dir, "forged.fw")
    other_key = os.path.join(run.dir, "other")
    subprocess.run([os.path.join(BIN_DIR, "myelin-fw"), "gen-keys", "-o", other_key],
                   check=True, stdout=subprocess.DEVNULL)
    subprocess.run([os.path.join(BIN_DIR, "myelin-fw"), "sign", "-i",
                    os.path.join(new, "x86_64.fw"), "-o", forged, "-s", other_key + ".priv"],
                   check=True)
    dev = run.device(image=os.path.join(base, "x86_64.img"))
    with run.step("boot; myelin-hub joins with the running firmware", timeout=180):
        dev.boot()
        join = standin.frame("phx_join", 170)
        if join.get("nerves_fw_version") != images.BASE_VERSION \
                or join.get("nerves_fw_platform") != "x86_64":
            raise Failure(f"the join does not describe the running firmware: {join}")
    with run.step("a forged update is refused and reported, nothing changes", timeout=150):
        meta = firmware_meta(new)
        standin.push("update", {"firmware_url": run.serve(forged), "firmware_meta": meta})
        status = standin.wait("a verdict on the forged update", lambda e: e["payload"]
                              if e.get("kind") == "frame" and e["event"] == "status_update"
                              and e["payload"].get("status") in ("failed", "completed")
                              else None, 140)
        if status["status"] != "failed" or "signature" not in json.dumps(status).lower():
            raise Failure(f"the forged update was not refused for its signature: {status}")
        st = update_status(dev)
        if st["status"] != "a" or st["slots"].get("b", {}).get("version"):
            raise Failure(f"the refused update changed the device: {st}")
    with run.step("the server's update installs with progress, the device reboots", timeout=300):
        standin.push("update", {"firmware_url": run.serve(os.path.join(new, "x86_64.fw")),
                                "firmware_meta": meta})
        progress = standin.wait("fwup_progress at 100", lambda e: e["payload"]
                                if e.get("kind") == "frame" and e["event"] == "fwup_progress"
                                and e["payload"].get("value") == 100 else None, 280)
        if progress.get("stage") not in ("downloading", "updating"):
            raise Failure(f"odd progress report: {progress}")
        standin.wait("status_update completed", lambda e: True if e.get("kind") == "frame"
                     and e["event"] == "status_update"
                     and e["payload"].get("status") == "completed" else None, 60)
        dev.wait_up(200)
        if running_slot(dev) != "b" or running_version(dev) != new_version:
            raise Failure("the device did not boot the server's firmware from slot b")
    with run.step("the new firmware validates and rejoins reporting its version", timeout=180):
        join = standin.frame("phx_join", 170)
        if join.get("nerves_fw_version") != new_version:
            raise Failure(f"the device rejoined without the new version: {join}")
        standin.frame("firmware_validated", 170)
        st = update_status(dev)
        if st["status"] != "b" or st["version"] != new_version:
            raise Failure(f"the device does not report the new firmware validated: {st}")
