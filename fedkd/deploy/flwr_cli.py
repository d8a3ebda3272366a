"""The ``flwr`` commands an operator types, called from Python with ``--format json``.

Connections live only in ``$FLWR_HOME/config.toml`` (Flower 1.39 has no
command to add one), so :func:`write_connection` writes that file. Every other
call runs the real ``flwr`` executable of this environment and reads its JSON.

``flwr run`` returns as soon as the run is submitted and reports success even
when the ServerApp later fails, so :meth:`FlwrCli.wait` polls ``flwr ls``
until the status is ``finished:*``; only ``finished:completed`` is a success.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

FINISHED_OK = "finished:completed"


class FlwrCliError(RuntimeError):
    """A ``flwr`` command failed; the message says which and what it printed."""


def executable(name: str) -> str:
    """A Flower executable from this Python environment (falling back to PATH)."""
    beside = Path(sys.executable).parent / name
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which(name)
    if found is None:
        raise FlwrCliError(f"{name} not found next to {sys.executable} or on PATH; is flwr installed?")
    return found


def flower_env(base: dict[str, str], **extra: str) -> dict[str, str]:
    """``base`` with this environment's bin folder first on PATH: Flower starts helpers by name
    (the SuperLink runs ``flower-superexec``, which runs ``flwr-serverapp``)."""
    bin_dir = str(Path(executable("flwr")).parent)
    return {**base, **extra, "PATH": os.pathsep.join([bin_dir, base.get("PATH", "")])}


def write_connection(flwr_home: Path, name: str, address: str, root_certificates: Path | None = None,
                     insecure: bool = False, default: bool = True) -> Path:
    """Write (or replace) ``$FLWR_HOME/config.toml`` with one SuperLink connection."""
    if (root_certificates is None) == (not insecure):
        raise ValueError("a connection needs either root_certificates (TLS) or insecure=True")
    flwr_home.mkdir(parents=True, exist_ok=True)
    lines = ["[superlink]"]
    if default:
        lines.append(f'default = "{name}"')
    lines += ["", f"[superlink.{name}]", f'address = "{address}"']
    if insecure:
        lines.append("insecure = true")
    else:
        lines.append(f'root-certificates = "{Path(root_certificates).resolve()}"')
    path = flwr_home / "config.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


class FlwrCli:
    """``flwr`` against one connection of one ``FLWR_HOME``."""

    def __init__(self, env: dict[str, str], connection: str, cwd: Path | None = None, timeout: float = 120.0):
        self.env = env
        self.connection = connection
        self.cwd = cwd
        self.timeout = timeout
        self.flwr = executable("flwr")

    def call(self, *args: str, cwd: Path | None = None) -> dict:
        """Run ``flwr ARGS --format json`` and return its JSON; raise FlwrCliError unless it succeeded."""
        argv = [self.flwr, *args, "--format", "json"]
        try:
            done = subprocess.run(argv, capture_output=True, text=True, env=self.env, cwd=cwd or self.cwd,
                                  timeout=self.timeout, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise FlwrCliError(f"`flwr {' '.join(args)}` did not answer within {self.timeout:.0f} s") from None
        try:
            answer = json.loads(done.stdout)
        except json.JSONDecodeError:
            answer = None
        if not isinstance(answer, dict) or not answer.get("success", False):
            message = answer.get("error-message") if isinstance(answer, dict) else None
            detail = (message or (done.stdout + done.stderr)).strip()
            raise FlwrCliError(f"`flwr {' '.join(args)}` failed (exit {done.returncode}): {detail[-2000:]}")
        return answer

    def register(self, public_key: Path) -> int:
        """Register a SuperNode's public key with the SuperLink; return the node id it will have."""
        return int(self.call("supernode", "register", str(public_key), self.connection)["node-id"])

    def nodes(self) -> list[dict]:
        answer = self.call("supernode", "ls", self.connection)
        return answer.get("nodes", [])

    def submit(self, app_dir: Path, run_config: str) -> int:
        """``flwr run APP CONNECTION --run-config ...``: the run id (the run is then pending)."""
        args = ["run", str(app_dir), self.connection]
        if run_config:
            args += ["--run-config", run_config]
        return int(self.call(*args, cwd=app_dir)["run-id"])

    def run_info(self, run_id: int) -> dict:
        runs = self.call("ls", self.connection, "--run-id", str(run_id))["runs"]
        if not runs:
            raise FlwrCliError(f"the SuperLink knows no run {run_id}")
        return runs[0]

    def wait(self, run_id: int, timeout: float, poll: float = 3.0,
             on_poll: Callable[[dict], None] | None = None, finished_hint: Callable[[], bool] | None = None,
             max_poll: float = 30.0, tick: float = 0.5) -> dict:
        """Poll until the run finishes (its final ``flwr ls`` entry) or ``timeout`` passes (then raise).

        Each ``flwr ls`` is a fresh ``flwr`` process, about 2.4 CPU seconds here: asked every 3 s, it took half
        a core for the whole run. With ``finished_hint`` (a cheap local check, e.g. the run's summary file
        exists), looked at every ``tick`` seconds, ``flwr ls`` is asked at once when the hint turns true and
        every ``poll`` seconds while it stays true; otherwise at intervals doubling from ``poll`` to
        ``max_poll`` (a ServerApp that crashes writes no summary; its status still comes from ``flwr ls``).
        Without a hint, every ``poll`` seconds. ``on_poll`` gets the last answer every ``poll`` seconds.
        """
        deadline = time.monotonic() + timeout
        interval, next_ask, hinted, info = poll, time.monotonic(), False, {}
        next_progress = time.monotonic()
        while True:
            now = time.monotonic()
            if finished_hint is not None and not hinted and finished_hint():
                hinted, interval, next_ask = True, poll, now
            if now >= next_ask:
                info = self.run_info(run_id)
                if str(info.get("status", "")).startswith("finished"):
                    if on_poll is not None:
                        on_poll(info)
                    return info
                if finished_hint is not None and not hinted:
                    interval = min(2 * interval, max_poll)
                next_ask = now + interval
            if on_poll is not None and now >= next_progress:
                on_poll(info)
                next_progress = now + poll
            if now > deadline:
                raise FlwrCliError(f"run {run_id} still {info.get('status')!r} after {timeout:.0f} s")
            time.sleep(tick if finished_hint is not None else interval)

    def stop(self, run_id: int) -> None:
        self.call("stop", str(run_id), self.connection)

    def log(self, run_id: int) -> str:
        """The run's log as ``flwr log --show`` prints it (the ServerApp's output)."""
        argv = [self.flwr, "log", str(run_id), self.connection, "--show"]
        done = subprocess.run(argv, capture_output=True, text=True, env=self.env, cwd=self.cwd,
                              timeout=self.timeout, stdin=subprocess.DEVNULL)
        return done.stdout + done.stderr
