"""Start, watch and stop the processes of a local federation, always by PID.

Flower's SuperLink and SuperNodes start children of their own (a SuperExec,
then a ServerApp or one ClientApp per message). Stopping the parent normally
takes them along, but a child can outlive a parent that was killed with
SIGKILL, so :class:`ProcessGroup` notes every descendant it sees before it
stops or kills a process and then ends whichever of those is still running,
by PID, after checking that the PID still names the same process.
"""
from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Collection


class ProcessFailed(RuntimeError):
    """A process exited (or never became ready); the message carries the end of its log."""


@dataclass(frozen=True)
class ProcessId:
    """A PID plus its start time, so a recycled PID is never mistaken for ours."""

    pid: int
    start_ticks: int


def _proc_stat(pid: int) -> tuple[int, int] | None:
    """(parent pid, start time in clock ticks) of a running process, or None if it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    fields = raw[raw.rindex(")") + 2:].split()  # the command name may hold spaces and brackets
    if fields[0] == "Z":  # a zombie has finished; only its parent's wait() remains
        return None
    return int(fields[1]), int(fields[19])


def descendants(pid: int) -> list[ProcessId]:
    """Every living process below ``pid`` (children, grandchildren, ...)."""
    children: dict[int, list[int]] = {}
    starts: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = _proc_stat(int(entry))
            if stat is not None:
                children.setdefault(stat[0], []).append(int(entry))
                starts[int(entry)] = stat[1]
    found, todo = [], list(children.get(pid, []))
    while todo:
        child = todo.pop()
        found.append(ProcessId(child, starts[child]))
        todo.extend(children.get(child, []))
    return found


def is_clientapp(pid: int) -> bool:
    """Whether ``pid`` is a ClientApp process: Flower's ``flwr-clientapp`` started cold, or one that
    fedkd-supernode forked warm (named ``flwr-clientapp`` in /proc/PID/comm)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        comm = Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return False
    from fedkd.deploy.warm_clientapp import CLIENTAPP_COMMAND

    return CLIENTAPP_COMMAND in cmdline or comm == CLIENTAPP_COMMAND


def still_running(proc: ProcessId) -> bool:
    stat = _proc_stat(proc.pid)
    return stat is not None and stat[1] == proc.start_ticks


def free_port(host: str = "127.0.0.1", exclude: Collection[int] = ()) -> int:
    """A TCP port the OS says is free right now, and not one of ``exclude`` (ports handed out but not yet bound)."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((host, 0))
            port = sock.getsockname()[1]
        if port not in exclude:
            return port


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """``count`` distinct free TCP ports. One ``free_port`` after another may hand out the same port twice (the
    OS reuses a port as soon as its probe socket closes): here every probe stays bound until all are chosen."""
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind((host, 0))
            ports.append(sock.getsockname()[1])
        return ports


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


@dataclass
class ManagedProcess:
    """One process we started, with its log file."""

    name: str
    argv: list[str]
    log_path: Path
    popen: subprocess.Popen
    log_offset: int = 0  # where this process's output starts in a log shared with earlier runs (restarts)
    seen_children: set[ProcessId] = field(default_factory=set)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def exit_code(self) -> int | None:
        return self.popen.poll()

    def log_text(self) -> str:
        """This process's output (not that of an earlier process with the same log file)."""
        try:
            with open(self.log_path, "rb") as log:
                log.seek(self.log_offset)
                return log.read().decode(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 15) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def note_children(self) -> None:
        if self.alive():
            self.seen_children.update(descendants(self.pid))


class ProcessGroup:
    """Processes started for one federation; :meth:`close` stops every one of them."""

    def __init__(self, env: dict[str, str], cwd: Path, log_dir: Path):
        self.env = env
        self.cwd = cwd
        self.log_dir = log_dir
        self.processes: list[ManagedProcess] = []

    def start(self, name: str, argv: list[str]) -> ManagedProcess:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / f"{name}.log"
        with open(log_path, "ab") as log:
            offset = log.tell()
            log.write(f"$ {' '.join(argv)}\n".encode())
            log.flush()
            # A session of its own: Ctrl-C reaches only the launcher, which then stops everything in order.
            popen = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     env=self.env, cwd=self.cwd, start_new_session=True)
        proc = ManagedProcess(name, argv, log_path, popen, log_offset=offset)
        self.processes.append(proc)
        return proc

    def stop(self, proc: ManagedProcess, grace: float = 20.0) -> int | None:
        """SIGTERM, then SIGKILL after ``grace`` seconds; then end any descendant left behind."""
        self.stop_many([proc], grace)
        return proc.exit_code()

    def stop_many(self, procs: list[ManagedProcess], grace: float = 20.0) -> None:
        """Stop several processes at once (SIGTERM to all, one shared grace period, then SIGKILL)."""
        for proc in procs:
            proc.note_children()
            if proc.alive():
                proc.popen.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace
        for proc in procs:
            try:
                proc.popen.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.popen.kill()
                proc.popen.wait()
        for proc in procs:
            self._end_leftovers(proc, grace=min(grace, 10.0))

    def kill(self, proc: ManagedProcess) -> None:
        """SIGKILL, as a crash would: its children are left to notice on their own (as on a real host)."""
        proc.note_children()
        if proc.alive():
            proc.popen.kill()
        proc.popen.wait()

    def close(self) -> None:
        """Stop every process: all but the first together, then the first (nodes before their link)."""
        try:
            self.stop_many(self.processes[:0:-1])
        finally:
            if self.processes:
                self.stop_many(self.processes[:1])
            for proc in self.processes:
                self._end_leftovers(proc, grace=0.0)

    def _end_leftovers(self, proc: ManagedProcess, grace: float) -> None:
        left = [c for c in proc.seen_children if still_running(c)]
        for child in left:
            _signal(child, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and any(still_running(c) for c in left):
            time.sleep(0.2)
        for child in left:
            if still_running(child):
                _signal(child, signal.SIGKILL)


def _signal(proc: ProcessId, sig: int) -> None:
    if still_running(proc):
        try:
            os.kill(proc.pid, sig)
        except ProcessLookupError:
            pass


def wait_until(ready: Callable[[], bool], timeout: float, what: str,
               watch: list[ManagedProcess] = (), poll: float = 0.25) -> None:
    """Wait for ``ready()``; fail early, with the log, if a watched process exits first."""
    deadline = time.monotonic() + timeout
    while True:
        if ready():
            return
        for proc in watch:
            if not proc.alive():
                raise ProcessFailed(f"{proc.name} exited with status {proc.exit_code()} while waiting for "
                                    f"{what}; end of {proc.log_path}:\n{proc.log_tail()}")
        if time.monotonic() > deadline:
            logs = "".join(f"\nend of {p.log_path}:\n{p.log_tail()}" for p in watch)
            raise ProcessFailed(f"timed out after {timeout:.0f} s waiting for {what}{logs}")
        time.sleep(poll)
