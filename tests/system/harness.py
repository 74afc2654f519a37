"""The system-test harness: scenarios made of named steps with deadlines, run one after another.

A scenario is a function taking a `Run`. It boots devices (`run.device()`), and wraps what it
does in steps:

    @scenario("reboot", "a reboot keeps /data and the KV environment", needs=["myelin-init"])
    def reboot(run):
        dev = run.device().boot()
        with run.step("write a file and a key", timeout=30):
            dev.sh("echo hello > /data/hello")
        ...

Every wait inside a step is bounded by the step's deadline, so a hung guest fails the step that
hung, by name. Each device's serial console is logged to <results>/<scenario>/<device>.log; a
failing scenario keeps that directory and prints the end of the log.

A scenario names the Myelin programs it needs. A program whose release binary is missing fails
the scenario with the reason: nothing is skipped.
"""

import atexit
import contextlib
import functools
import http.server
import os
import re
import shutil
import socket
import subprocess
import threading
import time
import traceback

from myelin_qemu import Machine, Shell, TimeoutExpired, MachineExited, CommandFailed, UartPair, \
    Hotplug

# The registry, in definition order (which is the run order).
SCENARIOS = []
# Devices a scenario handed over to a later one (Run.hand_over), by key: a boot shared.
HANDED_OVER = {}

# What a booted Myelin device prints on its console once every service is up; myelin-init logs it
# to the kernel log, which the console shows.
READY = re.compile(rb"init: all services ready")
# Size of the virtual disk: the board's layout needs 785 MiB (fwup.conf), a disk has some more.
DISK_SIZE = "1G"
# The first kernel line of a boot: how a reboot is recognised.
KERNEL_START_PATTERN = rb"Linux version \d+\.\d+"
KERNEL_START = re.compile(KERNEL_START_PATTERN)
# What wait_up() looks for after a kernel start: READY, or what means it will not come.
NOT_READY_OR_READY = re.compile(
    rb"(?P<ready>" + READY.pattern + rb")|(?P<reboot>" + KERNEL_START_PATTERN + rb")"
    rb"|(?P<safe>myelin-init: invalid configuration)")


class Failure(Exception):
    """A scenario's expectation does not hold."""


class Scenario:
    """A registered scenario."""

    def __init__(self, name, description, needs, func):
        self.name = name
        self.description = description
        self.needs = list(needs)
        self.func = func


def scenario(name, description, needs=()):
    """Registers a scenario function under name."""

    def register(func):
        SCENARIOS.append(Scenario(name, description, needs, func))
        return func

    return register


def missing_programs(needs, bin_dir):
    """For each needed program whose release binary is missing, the reason; empty when all are."""
    return [f"needs {program} (no {os.path.join(bin_dir, program)})" for program in needs
            if not os.access(os.path.join(bin_dir, program), os.X_OK)]


class StepFailed(Exception):
    """Raised out of a step with the step's name and the underlying cause."""


class Run:
    """One scenario's execution: its results directory, devices, steps and deadlines."""

    def __init__(self, scenario_, results_dir, images, later=()):
        self.scenario = scenario_
        # The scenarios selected to run after this one: a boot is handed over only to one.
        self.later = set(later)
        self.dir = results_dir
        self.images = images
        self.devices = []
        self.deadline = None
        self.current_step = None
        self.steps = []
        self.servers = []
        self.handed_over = False
        self.adopted_dirs = []

    def remaining(self, wanted):
        """The time a wait may take: wanted, cut to what is left of the current step."""
        if self.deadline is None:
            return wanted
        return max(0.1, min(wanted, self.deadline - time.monotonic()))

    @contextlib.contextmanager
    def step(self, name, timeout):
        """A named step that must finish within timeout seconds."""
        self.current_step = name
        start = time.monotonic()
        self.deadline = start + timeout
        for dev in self.devices:
            if dev.machine is not None:
                dev.machine.note(f"step: {name}")
        print(f"    step: {name}", flush=True)
        try:
            yield
        except (TimeoutExpired, MachineExited, CommandFailed, Failure, AssertionError) as e:
            raise StepFailed(f"step '{name}' failed: {e}") from e
        finally:
            self.deadline = None
        elapsed = time.monotonic() - start
        if elapsed > timeout:
            raise StepFailed(f"step '{name}' took {elapsed:.1f}s, more than its {timeout}s")
        self.steps.append((name, elapsed))

    def device(self, name="device", image=None, uart_pair=False, net_forwards=(), rtc_base="utc",
               hotplug=False):
        """A new device with a private copy of image (default: the base image); with uart_pair,
        its ttyS1 and ttyS2 are wired to each other (myelin_qemu.UartPair); net_forwards are
        ("tcp", host_port, guest_port) forwards into the guest; rtc_base is where its RTC
        starts (myelin_qemu.qemu_command); with hotplug, it has an empty PCIe port and
        `dev.hotplug.device_add()` plugs devices in (myelin_qemu.Hotplug)."""
        src = image or self.images.base_image()
        disk = os.path.join(self.dir, f"{name}.img")
        # The image is sparse and ends where its last write ended: copy it as such, onto a
        # "disk" big enough for the whole layout (/data ends at 785 MiB), as a real one is.
        subprocess.run(["cp", "--sparse=always", src, disk], check=True)
        subprocess.run(["truncate", "-s", DISK_SIZE, disk], check=True)
        dev = Device(self, name, disk, UartPair() if uart_pair else None, net_forwards, rtc_base,
                     Hotplug() if hotplug else None)
        self.devices.append(dev)
        return dev

    def hand_over(self, key, dev, **info):
        """Keeps dev running after this scenario, for a later one to take (a boot shared);
        info travels with it. A device nobody takes is stopped after the last scenario."""
        self.devices.remove(dev)
        self.handed_over = True
        HANDED_OVER[key] = (dev, info, self.dir)
        # Also on Ctrl-C: no QEMU outlives the runner (stopping twice is harmless).
        atexit.register(dev.stop)

    def take_over(self, key):
        """The device (and info) an earlier scenario handed over under key, now this run's;
        None if there is none (that scenario did not run, or failed)."""
        if key not in HANDED_OVER:
            return None
        dev, info, giver_dir = HANDED_OVER.pop(key)
        dev.run = self
        self.devices.append(dev)
        # The giver's directory (the disk, its console log) is now this run's to keep or drop.
        self.adopted_dirs.append(giver_dir)
        return dev, info

    def serve(self, path):
        """Serves one file over HTTP to the guests; returns the URL they reach it at."""
        server = FileServer(path)
        self.servers.append(server)
        return server.url

    def close(self):
        """Stops every device and server."""
        for dev in self.devices:
            dev.stop()
        for server in self.servers:
            server.stop()


class Device:
    """A QEMU machine booting one disk, with a shell on its console."""

    def __init__(self, run, name, disk, uarts=None, net_forwards=(), rtc_base="utc", hotplug=None):
        self.run = run
        self.rtc_base = rtc_base
        self.hotplug = hotplug
        self.net_forwards = tuple(net_forwards)
        self.name = name
        self.disk = disk
        self.log = os.path.join(run.dir, f"{name}.log")
        self.machine = None
        self.shell = None
        self.boots = 0
        self.uarts = uarts

    def power_on(self):
        """Starts QEMU on the disk (the previous machine, if any, must be off)."""
        assert self.machine is None or not self.machine.running()
        if self.machine is not None:
            self.machine.stop()
        extra = list(self.uarts.qemu_args() if self.uarts else ())
        extra += self.hotplug.qemu_args() if self.hotplug else []
        self.machine = Machine(self.disk, self.log, net_forwards=self.net_forwards,
                               extra=extra, rtc_base=self.rtc_base).start()
        self.shell = Shell(self.machine)
        if self.uarts:
            self.uarts.start(self.run.remaining(30))
        return self

    def boot(self, timeout=120):
        """Powers on, then waits until the device is up (see wait_up)."""
        self.power_on()
        return self.wait_up(timeout)

    def wait_up(self, timeout=120):
        """Waits for a kernel start and then READY, and attaches the console shell.

        Fails at once, instead of at the deadline, if the device reboots again or myelin-init
        falls back to safe mode before READY."""
        self.wait_kernel_start(timeout)
        m = self.machine.wait_for(NOT_READY_OR_READY, self.run.remaining(timeout))
        if m.group("reboot"):
            raise Failure("the device rebooted before all services were ready")
        if m.group("safe"):
            raise Failure("myelin-init rejected its configuration (safe mode)")
        self.shell.attach(self.run.remaining(30))
        return self

    def wait_kernel_start(self, timeout):
        """Waits for the next kernel start on the console; returns seconds waited."""
        t0 = time.monotonic()
        self.machine.wait_for(KERNEL_START, self.run.remaining(timeout))
        self.boots += 1
        return time.monotonic() - t0

    def sh(self, command, timeout=30, check=True):
        """Runs a shell command; returns its output (stripped). With check, it must succeed."""
        status, out = self.shell.run(command, timeout=self.run.remaining(timeout), check=check)
        return out.strip() if check else (status, out.strip())

    def reboot(self, timeout=120):
        """Asks for a clean reboot and waits until the device is up again."""
        self.machine.send("reboot\n")
        return self.wait_up(timeout)

    def power_cut(self):
        """SIGKILL to QEMU: the disk keeps exactly what the guest had written so far."""
        self.machine.kill()

    def power_off(self):
        """Turns the machine off; the disk stays, for the host to inspect or change before the
        next power_on."""
        if self.machine is not None:
            self.machine.stop()
            self.machine = None

    def stop(self):
        """Turns the machine off and closes its log."""
        if self.machine is not None:
            self.machine.stop()
        if self.uarts:
            self.uarts.close()
        if self.hotplug:
            self.hotplug.close()


class FileServer:
    """A one-file HTTP server on the host, reachable from guests at 10.0.2.2."""

    def __init__(self, path):
        directory, name = os.path.split(os.path.abspath(path))
        handler = functools.partial(QuietHandler, directory=directory)
        self.httpd = http.server.ThreadingHTTPServer(("0.0.0.0", 0), handler)
        port = self.httpd.server_address[1]
        self.url = f"http://10.0.2.2:{port}/{name}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        """Stops serving."""
        self.httpd.shutdown()
        self.httpd.server_close()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    """SimpleHTTPRequestHandler without a line on stderr per request."""

    def log_message(self, format, *args):  # noqa: A002 (the base class's signature)
        pass


class TcpListener:
    """A TCP server on the host that accepts and closes connections (a connectivity target)."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("0.0.0.0", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            conn.close()

    def stop(self):
        """Stops listening."""
        self.sock.close()


def run_scenarios(selected, images, results_root, bin_dir, keep_logs=False):
    """Runs the selected scenarios in order; prints a report; returns True when none failed."""
    outcomes = []
    for i, sc in enumerate(selected):
        missing = missing_programs(sc.needs, bin_dir)
        if missing:
            outcomes.append((sc, "FAIL", "; ".join(missing), 0.0))
            print(f"--- {sc.name}: FAIL, {'; '.join(missing)}", flush=True)
            continue
        print(f"--- {sc.name}: {sc.description}", flush=True)
        rdir = os.path.join(results_root, sc.name)
        shutil.rmtree(rdir, ignore_errors=True)
        os.makedirs(rdir)
        run = Run(sc, rdir, images, later=[later.name for later in selected[i + 1:]])
        t0 = time.monotonic()
        try:
            sc.func(run)
        except Exception as e:  # noqa: BLE001 (any failure is reported, then the next runs)
            elapsed = time.monotonic() - t0
            detail = str(e) if isinstance(e, StepFailed) else traceback.format_exc()
            outcomes.append((sc, "FAIL", detail, elapsed))
            print(f"--- {sc.name}: FAIL after {elapsed:.0f}s\n{detail}", flush=True)
            for dev in run.devices:
                if dev.machine is not None:
                    print(f"    last lines of {dev.log}:", flush=True)
                    print("      " + dev.machine.tail(60).replace("\n", "\n      "), flush=True)
            print(f"    full logs kept in {rdir}", flush=True)
            continue
        finally:
            # Also on Ctrl-C: no QEMU outlives the runner.
            run.close()
        elapsed = time.monotonic() - t0
        outcomes.append((sc, "PASS", "", elapsed))
        print(f"--- {sc.name}: PASS in {elapsed:.0f}s", flush=True)
        if not keep_logs and not run.handed_over:
            for d in [rdir] + run.adopted_dirs:
                shutil.rmtree(d, ignore_errors=True)
        elif run.adopted_dirs:
            print(f"    (the shared boot's disk and console log are in {run.adopted_dirs[0]})",
                  flush=True)
    for dev, _, _ in HANDED_OVER.values():
        dev.stop()
    HANDED_OVER.clear()

    print("\nsystem tests:")
    for sc, verdict, detail, elapsed in outcomes:
        line = f"  {verdict:8} {sc.name:12} {elapsed:6.0f}s  {sc.description}"
        if elapsed == 0.0 and detail:
            line = f"  {verdict:8} {sc.name:12} {'':6}   {detail}"
        print(line)
    return all(verdict != "FAIL" for _, verdict, _, _ in outcomes)
