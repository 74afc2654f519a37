"""Boot Myelin's x86_64 board image in QEMU and talk to it over the serial console.

The system tests (tests/system/run), the boot benchmark (scripts/bench.d/boot) and scripts/qemu
share this module, so that what a user tries interactively is the machine the tests boot:

- `qemu_command()` is the one QEMU command line: TCG for the tests (KVM guests hang on the CI
  machines; `kvm_works()` probes it, with a timeout, for scripts/qemu), the disk on virtio, the Intel 6300ESB watchdog (the real watchdog driver runs, and its expiry
  resets the machine), a user-mode network with the host at 10.0.2.2, and the serial console.
- `Machine` runs QEMU with the serial console on a pipe, records every byte of it in a log file,
  and waits for patterns with a deadline. Killing it is how the tests cut the power.
- `Shell` runs commands through a shell on the serial console. Each command is bracketed by
  markers that the echo of the typed line cannot contain, so its output and exit status are
  recovered exactly even when the terminal echoes input.
- `UartPair` gives the guest two more 16550 UARTs (ttyS1, ttyS2) whose wires the host joins, as
  a null-modem cable would: what the guest sends on one arrives on the other.
- `Hotplug` gives the guest an empty PCIe root port and the host a QMP monitor socket, through
  which a test plugs a device in while the guest runs (`device_add`), as a user plugs a card.

Run as a program, it boots a disk image interactively (what scripts/qemu does):
    python3 tests/system/myelin_qemu.py DISK.img
with host port $MYELIN_QEMU_SSH_PORT (default 2222, empty for none) forwarded to the guest's 22.
"""

import json
import os
import re
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

QEMU = "qemu-system-x86_64"
# Guest memory. Myelin needs far less; the BEAM anchor of the boot benchmark needs more than 128.
MEMORY_MB = 256
# Where the guest reaches the host on QEMU's user network.
HOST_FROM_GUEST = "10.0.2.2"

# ANSI escape sequences GRUB and SeaBIOS print.
ANSI = re.compile(rb"\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][0-9A-Za-z]|\x1bc")


class TimeoutExpired(Exception):
    """A pattern did not appear on the console in time."""


class MachineExited(Exception):
    """QEMU exited while something was expected from the guest."""


def qemu_command(disk, interactive=False, net_forwards=(), extra=(), accel="tcg", rtc_base="utc"):
    """The QEMU command line for the x86_64 board.

    disk: raw disk image (the board's .img, or a copy the guest may write).
    interactive: serial console multiplexed with the QEMU monitor on the terminal (Ctrl-A X
    quits, Ctrl-A C switches) instead of a plain pipe.
    net_forwards: ("tcp", host_port, guest_port) tuples for QEMU's hostfwd.
    accel: "tcg" or "kvm" (only after kvm_works()).
    rtc_base: where the guest's RTC starts: "utc" (the host's clock) or a UTC date
    ("2030-01-01T00:00:00"), for a guest that boots with a wrong clock.
    """
    netdev = "user,id=net0"
    for proto, host_port, guest_port in net_forwards:
        netdev += f",hostfwd={proto}::{host_port}-:{guest_port}"
    cmd = [
        QEMU,
        "-accel", accel,
        # q35 (ICH9, PCIe): under TCG the kernel boots ~1.5 s faster than on the i440FX `pc`
        # machine, whose ACPI PCI interrupt links are slow to emulate.
        "-machine", "q35",
        "-m", str(MEMORY_MB),
        "-smp", "1",
        "-nodefaults",
        "-no-user-config",
        "-drive", f"file={disk},if=virtio,format=raw,cache=writeback",
        "-device", "i6300esb",
        "-action", "watchdog=reset",
        "-netdev", netdev,
        # romfile= skips the iPXE option ROM: nothing boots from the network, and it costs time.
        "-device", "virtio-net-pci,netdev=net0,romfile=",
        "-device", "virtio-rng-pci",
        "-rtc", f"base={rtc_base}",
    ]
    if interactive:
        # Not -nographic: with -nodefaults it creates no serial port at all, so the terminal
        # shows nothing and Ctrl-A X does nothing. mon:stdio puts the first serial port and the
        # monitor on the terminal, in raw mode, behind QEMU's Ctrl-A escape.
        cmd += ["-display", "none", "-serial", "mon:stdio"]
    else:
        cmd += ["-display", "none", "-monitor", "none", "-serial", "stdio"]
    return cmd + list(extra)


# A boot sector that proves a KVM guest runs: it writes "KVM-OK" to the first serial port, then
# exits QEMU through isa-debug-exit (port 0xf4; QEMU's status is (value << 1) | 1 = 1).
#   xor ax, ax; mov ds, ax; mov si, msg; mov dx, 0x3f8
#   next: lodsb; test al, al; jz done; out dx, al; jmp next
#   done: xor al, al; out 0xf4, al; hlt; jmp $-1
#   msg: "KVM-OK", 13, 10, 0                                    (loaded at 0x7c00)
_PROBE_CODE = bytes.fromhex("31c08ed8be197cbaf803ac84c07403eeebf830c0e6f4f4ebfd") + b"KVM-OK\r\n\0"
PROBE_SECTOR = _PROBE_CODE + bytes(510 - len(_PROBE_CODE)) + b"\x55\xaa"
# How long the probe may take. A working KVM needs well under a second; on some hosts a KVM
# guest hangs in SeaBIOS forever, and then this is what the user waits once.
KVM_PROBE_TIMEOUT = float(os.environ.get("MYELIN_KVM_PROBE_TIMEOUT", "10"))


def kvm_works(disk=None, timeout=KVM_PROBE_TIMEOUT):
    """(True, "") if a KVM guest on the board's machine runs, else (False, why).

    /dev/kvm opening is not enough: on some hosts a KVM guest hangs (in the firmware, or once
    GRUB leaves real mode) or QEMU aborts on the CPU model. With disk, the probe boots a
    throw-away snapshot of it and waits for the kernel's first line ("Linux version"): only a
    boot that far proves the board runs. Without, it boots a one-sector guest that prints
    KVM-OK. Either way with the board's QEMU command line and a deadline."""
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return False, "/dev/kvm is missing or not accessible"
    with tempfile.TemporaryDirectory(prefix="myelin-kvm-probe-") as tmp:
        if disk is None:
            disk = os.path.join(tmp, "probe.img")
            with open(disk, "wb") as f:
                f.write(PROBE_SECTOR)
                # SeaBIOS cannot read a disk smaller than its geometry's first track.
                f.truncate(1 << 20)
            marker = b"KVM-OK"
        else:
            marker = b"Linux version"
        cmd = qemu_command(disk, accel="kvm") + [
            "-snapshot", "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"]
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT)
        out = b""
        deadline = time.monotonic() + timeout
        try:
            with selectors.DefaultSelector() as sel:
                sel.register(proc.stdout, selectors.EVENT_READ)
                while marker not in out:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        return False, f"a KVM guest did not boot within {timeout:.0f}s"
                    if sel.select(left):
                        chunk = os.read(proc.stdout.fileno(), 65536)
                        if not chunk:
                            last = ANSI.sub(b"", out).decode(errors="replace").strip().splitlines()
                            return False, (f"QEMU with KVM failed "
                                           f"({last[-1] if last else f'status {proc.wait()}'})")
                        out += chunk
            return True, ""
        finally:
            proc.kill()
            proc.wait()


class Machine:
    """A QEMU process whose serial console is recorded and can be waited on."""

    def __init__(self, disk, log_path, net_forwards=(), extra=(), rtc_base="utc", accel="tcg"):
        self.disk = disk
        self.log_path = log_path
        self.cmd = qemu_command(disk, net_forwards=net_forwards, extra=extra, rtc_base=rtc_base,
                                accel=accel)
        self.proc = None
        self.buf = bytearray()
        # Index into buf up to which output has been consumed by wait_for().
        self.cursor = 0
        self.cond = threading.Condition()
        self.log = open(log_path, "ab")  # noqa: SIM115 (closed in stop())
        self.reader = None
        self.started_at = None

    def start(self):
        """Starts QEMU; the guest boots from the disk."""
        self.note(f"qemu: {' '.join(self.cmd)}")
        self.proc = subprocess.Popen(
            self.cmd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.started_at = time.monotonic()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        return self

    def _read(self):
        fd = self.proc.stdout.fileno()
        while True:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                chunk = b""
            with self.cond:
                if chunk:
                    self.buf.extend(chunk)
                    self.log.write(chunk)
                    self.log.flush()
                self.cond.notify_all()
            if not chunk:
                return

    def note(self, text):
        """Writes a harness note into the console log, marked so it is not mistaken for output."""
        with self.cond:
            self.log.write(f"\n##### {text}\n".encode())
            self.log.flush()

    def running(self):
        """True while QEMU runs."""
        return self.proc is not None and self.proc.poll() is None

    def send(self, text):
        """Types text on the serial console."""
        data = text.encode() if isinstance(text, str) else text
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def wait_for(self, pattern, timeout, consume=True):
        """Waits until the console output after the cursor matches pattern (bytes regex or str).

        Returns the match; with consume, the cursor moves past it. Raises TimeoutExpired, or
        MachineExited if QEMU exits first.
        """
        if isinstance(pattern, str):
            pattern = re.compile(re.escape(pattern.encode()))
        elif isinstance(pattern, bytes):
            pattern = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                m = pattern.search(self.buf, self.cursor)
                if m:
                    if consume:
                        self.cursor = m.end()
                    return m
                if not self.running() and (self.reader is None or not self.reader.is_alive()):
                    raise MachineExited(
                        f"QEMU exited (status {self.proc.returncode}) while waiting for "
                        f"{pattern.pattern!r}"
                    )
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutExpired(f"no {pattern.pattern!r} on the console within {timeout:.0f}s")
                self.cond.wait(min(left, 0.5))

    def skip_to_end(self):
        """Marks everything received so far as consumed."""
        with self.cond:
            self.cursor = len(self.buf)

    def output_since(self, start):
        """Console bytes from index start to now."""
        with self.cond:
            return bytes(self.buf[start:])

    def position(self):
        """Index of the next byte to arrive, for output_since()."""
        with self.cond:
            return len(self.buf)

    def kill(self):
        """Pulls the plug: SIGKILL to QEMU, whatever the guest is doing."""
        if self.running():
            self.note("power cut (SIGKILL to QEMU)")
            os.killpg(self.proc.pid, signal.SIGKILL)
        self._reap()

    def stop(self):
        """Ends QEMU (if still running) and closes the log."""
        self.kill()
        with self.cond:
            self.log.close()

    def _reap(self):
        if self.proc is None:
            return
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        if self.reader is not None:
            self.reader.join(timeout=5)

    def tail(self, lines=60):
        """The last lines of the console, escape sequences removed, for failure reports."""
        with self.cond:
            text = ANSI.sub(b"", bytes(self.buf)).replace(b"\r", b"")
        return b"\n".join(text.split(b"\n")[-lines:]).decode(errors="replace")


class Terminal(Machine):
    """A program (scripts/qemu) run on a pseudo-terminal, as a user runs it in a terminal window:
    what it prints is recorded and can be waited on like a Machine's console, and send() types.

    Only openpty() and plain reads and writes: no termios calls of our own (some sandboxes lack
    the newer terminal ioctls); the program sets the terminal up as it would a real one."""

    def __init__(self, argv, log_path, env=None):
        super().__init__(None, log_path)
        self.cmd = list(argv)
        self.env = env
        self.master = None

    def start(self):
        """Starts the program with the pty's slave as its stdin, stdout and stderr."""
        import pty  # noqa: PLC0415 (only terminals need it)
        self.note(f"terminal: {' '.join(self.cmd)}")
        self.master, slave = pty.openpty()
        self.proc = subprocess.Popen(self.cmd, stdin=slave, stdout=slave, stderr=slave,
                                     start_new_session=True, env=self.env, close_fds=True)
        os.close(slave)
        self.started_at = time.monotonic()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        return self

    def _read(self):
        while True:
            try:
                chunk = os.read(self.master, 65536)
            except OSError:
                # EIO once every process has closed the slave: the program is gone.
                chunk = b""
            with self.cond:
                if chunk:
                    self.buf.extend(chunk)
                    self.log.write(chunk)
                    self.log.flush()
                self.cond.notify_all()
            if not chunk:
                return

    def send(self, text):
        """Types text (a str, or bytes such as b"\\x01x" for Ctrl-A X)."""
        data = text.encode() if isinstance(text, str) else text
        os.write(self.master, data)

    def wait_exit(self, timeout):
        """Waits for the program to exit; its status."""
        return self.proc.wait(timeout=timeout)

    def stop(self):
        """Ends the program (if still running), closes the pty and the log."""
        super().stop()
        if self.master is not None:
            os.close(self.master)
            self.master = None


class UartPair:
    """Two more serial ports for the guest, ttyS1 and ttyS2 after the console's ttyS0, each on a
    QEMU socket chardev; a host thread copies the bytes of each to the other."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="myelin-uarts-")
        self.paths = [os.path.join(self.dir, f"ttyS{i}") for i in (1, 2)]
        self.socks = []
        self.thread = None

    def qemu_args(self):
        """The QEMU options adding the two ports (after the console's -serial)."""
        args = []
        for i, path in enumerate(self.paths, 1):
            args += ["-chardev", f"socket,id=uart{i},path={path},server=on,wait=off",
                     "-serial", f"chardev:uart{i}"]
        return args

    def start(self, timeout=30):
        """Connects to both ports once QEMU listens, then starts relaying."""
        self.stop()
        deadline = time.monotonic() + timeout
        for path in self.paths:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            while True:
                try:
                    sock.connect(path)
                    break
                except (FileNotFoundError, ConnectionRefusedError):
                    if time.monotonic() > deadline:
                        raise TimeoutExpired(f"QEMU did not open {path} within {timeout}s")
                    time.sleep(0.05)
            self.socks.append(sock)
        self.thread = threading.Thread(target=self._relay, args=(list(self.socks),), daemon=True)
        self.thread.start()

    @staticmethod
    def _relay(socks):
        sel = selectors.DefaultSelector()
        a, b = socks
        sel.register(a, selectors.EVENT_READ, b)
        sel.register(b, selectors.EVENT_READ, a)
        while True:
            for key, _ in sel.select():
                try:
                    data = key.fileobj.recv(65536)
                    if not data:
                        return
                    key.data.sendall(data)
                except OSError:
                    return

    def stop(self):
        """Stops relaying (QEMU closing its end also does)."""
        for sock in self.socks:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()
        self.socks = []
        if self.thread is not None:
            self.thread.join(timeout=5)
            self.thread = None

    def close(self):
        """Stops relaying and removes the sockets' directory."""
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


class Hotplug:
    """An empty PCIe root port (`hp0`) for devices added at run time, and QEMU's QMP monitor on a
    Unix socket to add them: `device_add("virtio-serial-pci", "hot0")`."""

    PORT = "hp0"

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="myelin-qmp-")
        self.path = os.path.join(self.dir, "qmp.sock")

    def qemu_args(self):
        """The QEMU options adding the port and the monitor."""
        return ["-device", f"pcie-root-port,id={self.PORT},bus=pcie.0,chassis=1",
                "-qmp", f"unix:{self.path},server=on,wait=off"]

    def command(self, execute, timeout=30, **arguments):
        """Runs one QMP command on a fresh connection; returns its "return" value, raises
        CommandFailed with QEMU's error."""
        deadline = time.monotonic() + timeout
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(self.path)
            stream = sock.makefile("rw", encoding="utf-8", newline="\n")

            def reply():
                # Events ({"event": ...}) may come before the answer.
                while time.monotonic() < deadline:
                    line = stream.readline()
                    if not line:
                        raise CommandFailed(f"QMP closed the connection during {execute}")
                    msg = json.loads(line)
                    if "return" in msg:
                        return msg["return"]
                    if "error" in msg:
                        raise CommandFailed(f"QMP {execute}: {msg['error']}")
                raise TimeoutExpired(f"QMP {execute}: no answer within {timeout}s")

            greeting = json.loads(stream.readline())
            if "QMP" not in greeting:
                raise CommandFailed(f"not a QMP greeting: {greeting}")
            for cmd, args in (("qmp_capabilities", {}), (execute, arguments)):
                stream.write(json.dumps({"execute": cmd, "arguments": args}) + "\n")
                stream.flush()
                result = reply()
            return result

    def device_add(self, driver, dev_id):
        """Plugs a new device of `driver` into the root port."""
        return self.command("device_add", driver=driver, id=dev_id, bus=self.PORT)

    def close(self):
        """Removes the socket's directory."""
        shutil.rmtree(self.dir, ignore_errors=True)


class CommandFailed(Exception):
    """A shell command exited with a non-zero status."""


class Shell:
    """Commands through a shell on the guest's serial console."""

    def __init__(self, machine):
        self.machine = machine
        self.serial = 0

    def attach(self, timeout=30):
        """Waits until the shell answers, then quiets the kernel's console output."""
        self.machine.send("\n")
        self.run("true", timeout=timeout)
        # Kernel messages interleaved with command output would garble it; `dmesg` still has
        # them all, and level 1 still lets panics through to the console.
        self.run("dmesg -n 1", timeout=timeout)

    def run(self, command, timeout=30, check=True):
        """Runs one shell command line; returns (status, output).

        The command's stdin is /dev/null so it can never eat the next typed line.
        """
        self.serial += 1
        n = self.serial
        begin = f"__MYELIN_BEGIN_{n}__"
        # printf's format splits the marker, so the terminal's echo of this line never matches.
        line = (
            f"printf '\\n%s_%s__\\n' __MYELIN_BEGIN {n}; {{ {command} ; }} </dev/null; "
            f"printf '\\n%s_%s__ %s\\n' __MYELIN_END {n} $?\n"
        )
        self.machine.send(line)
        self.machine.wait_for(begin.encode() + b"\r?\n", timeout)
        m = self.machine.wait_for(
            re.compile(rb"(.*?)\r?\n__MYELIN_END_%d__ (\d+)\r?\n" % n, re.S), timeout
        )
        output = m.group(1).replace(b"\r", b"").decode(errors="replace").strip("\n")
        status = int(m.group(2))
        if check and status != 0:
            raise CommandFailed(f"`{command}` exited with {status}:\n{output}")
        return status, output

    def out(self, command, timeout=30):
        """Runs a command that must succeed; returns its output, stripped."""
        return self.run(command, timeout=timeout)[1].strip()


def main():
    """Boots a disk image with the serial console on this terminal."""
    if len(sys.argv) != 2 or sys.argv[1].startswith("-"):
        print(__doc__)
        sys.exit(2)
    if shutil.which(QEMU) is None:
        sys.exit(f"{QEMU} is missing (apt-get install qemu-system-x86)")
    ssh_port = os.environ.get("MYELIN_QEMU_SSH_PORT", "2222")
    forwards = [("tcp", int(ssh_port), 22)] if ssh_port else []
    accel = os.environ.get("MYELIN_QEMU_ACCEL", "auto")
    if accel == "auto":
        ok, why = kvm_works(sys.argv[1])
        accel = "kvm" if ok else "tcg"
        if not ok:
            print(f"qemu: not using KVM: {why}; emulating the CPU (TCG), which is slower "
                  "(MYELIN_QEMU_ACCEL=tcg skips this probe)", flush=True)
    elif accel not in ("kvm", "tcg"):
        sys.exit(f"MYELIN_QEMU_ACCEL must be auto, kvm or tcg, not {accel!r}")
    cmd = qemu_command(sys.argv[1], interactive=True, net_forwards=forwards, accel=accel)
    ssh = f"; ssh -p {ssh_port} root@localhost" if ssh_port else ""
    print(f"qemu: {accel.upper()}; serial console below (Ctrl-A X quits, Ctrl-A C toggles the "
          f"QEMU monitor{ssh})", flush=True)
    os.execvp(cmd[0], cmd)


if __name__ == "__main__":
    main()
