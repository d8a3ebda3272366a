"""The SuperExec that ``fedkd-supernode`` starts: every ClientApp forked from a warm process.

Flower 1.39's SuperExec starts a fresh ``flwr-clientapp`` process for every message
(``SubprocessExecutor.launch``), and each pays Python's imports of torch and of Flower's ClientApp
runtime again: about 2.5 s of CPU per client-round, most of a deployed round on a small machine
(docs/performance.md §6). Flower 1.39 keeps no ClientApp warm, so this module does it the way a
fork server (CPython's ``forkserver``, Android's zygote) does:

- :func:`main` forks a *zygote* first thing, before the SuperExec opens any gRPC channel. The zygote
  imports :data:`PRELOAD` once and then waits on a pipe.
- The SuperExec runs as Flower's own (``flower-superexec``), except that the command line it would
  start for a ClientApp is written to the pipe instead; the zygote forks, and the child runs
  Flower's ``flwr-clientapp`` entry point with exactly that command line. The child is therefore the
  same program Flower would have started, minus the imports: it pulls the message, installs and
  loads the app from the run's FAB (our own packages are *not* preloaded, so the FAB stays the code
  that runs), replies and exits.

Forking is safe here because the zygote has no threads and no gRPC channel when it forks (it only
imported modules); each child opens its own. Anything unexpected (another Flower version, changed
sources, a dead zygote) falls back to Flower's own launch with a warning, never to a lost message.
"""
from __future__ import annotations

import importlib
import json
import logging
import os
import signal
import subprocess
import sys
import traceback

from fedkd.flower_pin import FLOWER_VERSION, is_pinned_flower, sources_sha256

log = logging.getLogger("fedkd.deploy")

# sha256 of inspect.getsource (fedkd/flower_pin.py) of what the launch shim relies on: that launch builds the ClientApp's
# command line and hands it to the module's subprocess.Popen (result unused), stdout=DEVNULL when quiet.
FLOWER_SOURCES_SHA256 = {
    "SubprocessExecutor.launch": "83abf3dbe02281fdf384ef650928e34eccc073dadcf690d34e9cb0eaab46b56c",
}
CLIENTAPP_COMMAND = "flwr-clientapp"
# What a ClientApp imports before it does any work, and what a fresh process spends its start-up on:
# torch (about 2 s here), torch._dynamo (about 2.4 s; only DP-SGD's torch.optim optimiser needs it since
# plain training uses fedkd.optimizers, but the zygote pays it once per node, not per round), and Flower's
# ClientApp runtime (gRPC, protobuf). Our own packages are left to the FAB on purpose.
PRELOAD = ("numpy", "torch", "torch._dynamo", "flwr.supernode.cli", "flwr.supernode.runtime.run_clientapp")
MAX_REQUEST_BYTES = 1 << 16  # a command line; anything longer on the pipe is not ours
FORKED_LOG = "fedkd: ClientApp forked warm"  # the node log's line per ClientApp (tests look for it)


def _flower_launch():
    from flwr.supercore.superexec.executor import subprocess_executor

    return subprocess_executor


def _flower_functions() -> dict:
    return {"SubprocessExecutor.launch": _flower_launch().SubprocessExecutor.launch}


def flower_sources_sha256() -> dict[str, str]:
    return sources_sha256(_flower_functions())


def matches_installed_flower() -> bool:
    return is_pinned_flower(_flower_functions(), FLOWER_SOURCES_SHA256)


# ---------------------------------------------------------------------------------------------- zygote side

def _reap(*_) -> None:
    """Collect every finished ClientApp (SIGCHLD), so that none stays a zombie."""
    while True:
        try:
            pid, _status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _name_process(name: str) -> None:
    """Show the forked child as ``flwr-clientapp`` in ps/top (/proc/PID/comm; Linux's PR_SET_NAME, 15 bytes)."""
    try:
        import ctypes

        ctypes.CDLL(None).prctl(15, name.encode()[:15], 0, 0, 0)
    except (OSError, AttributeError):
        pass  # not Linux: the name is cosmetic


def _run_clientapp(argv: list[str], quiet: bool) -> None:
    """In the forked child: Flower's ``flwr-clientapp`` with ``argv``; never returns."""
    code = 1
    try:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # the child's own subprocesses are its to wait for
        _name_process(CLIENTAPP_COMMAND)
        if quiet:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 1)
            os.dup2(devnull, 2)
        from flwr.supernode.cli import flwr_clientapp

        sys.argv = [CLIENTAPP_COMMAND, *argv[1:]]
        flwr_clientapp()
        code = 0
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
    except BaseException:  # noqa: BLE001 -- a crash must end this child, never return into the zygote's loop
        traceback.print_exc()
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def _serve(read_fd: int) -> None:
    """The zygote: preload, then fork one ClientApp per request until the SuperExec closes the pipe."""
    for name in PRELOAD:
        try:
            importlib.import_module(name)
        except Exception as err:  # noqa: BLE001 -- a missing optional module only makes the child import it
            print(f"fedkd warm ClientApp: could not preload {name}: {err}", file=sys.stderr)
    signal.signal(signal.SIGCHLD, _reap)
    with os.fdopen(read_fd, "rb") as requests:
        while True:
            line = requests.readline(MAX_REQUEST_BYTES + 1)
            if not line:
                break  # the SuperExec is gone
            try:
                request = json.loads(line)
                argv, quiet = [str(a) for a in request["argv"]], bool(request["quiet"])
            except (ValueError, KeyError, TypeError):
                print("fedkd warm ClientApp: malformed request ignored", file=sys.stderr)
                continue
            pid = os.fork()
            if pid == 0:
                requests.close()
                _run_clientapp(argv, quiet)
            print(f"{FORKED_LOG} (pid {pid})", file=sys.stderr, flush=True)
    _reap()
    os._exit(0)


class Zygote:
    """The SuperExec's handle on its zygote: a pid and the pipe's write end."""

    def __init__(self, pid: int, write_fd: int):
        self.pid, self._pipe = pid, os.fdopen(write_fd, "wb", buffering=0)

    @classmethod
    def start(cls) -> "Zygote":
        read_fd, write_fd = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(write_fd)
            try:
                _serve(read_fd)
            finally:
                os._exit(1)
        os.close(read_fd)
        return cls(pid, write_fd)

    def launch(self, argv: list[str], quiet: bool) -> bool:
        """Ask the zygote for a ClientApp with this command line; False if it cannot take it."""
        line = json.dumps({"argv": list(argv), "quiet": quiet}).encode() + b"\n"
        if len(line) > MAX_REQUEST_BYTES:
            return False
        try:
            self._pipe.write(line)
        except OSError:
            return False
        return True


class _LaunchThroughZygote:
    """Stands in for the ``subprocess`` module inside Flower's subprocess executor: a ClientApp's command
    line goes to the zygote, everything else (and a ClientApp the zygote cannot take) to ``subprocess``."""

    def __init__(self, zygote: Zygote):
        self._zygote = zygote

    def __getattr__(self, name):
        return getattr(subprocess, name)

    def Popen(self, args, *rest, **kwargs):  # noqa: N802 -- the name Flower calls
        if (isinstance(args, (list, tuple)) and args and os.path.basename(str(args[0])) == CLIENTAPP_COMMAND
                and not rest and set(kwargs) <= {"stdout", "stderr"}):
            quiet = kwargs.get("stdout") is subprocess.DEVNULL
            if self._zygote.launch([str(a) for a in args], quiet):
                return None  # Flower's launch does not keep the process object
            log.warning("the warm ClientApp process is gone; starting %s cold", CLIENTAPP_COMMAND)
        return subprocess.Popen(args, *rest, **kwargs)


def install(zygote: Zygote) -> bool:
    """Route the SuperExec's ClientApp launches through ``zygote`` (only on the Flower this was written for)."""
    if not matches_installed_flower():
        import flwr

        log.warning("Flower %s's ClientApp launch is not the one fedkd/deploy/warm_clientapp.py was written for "
                    "(%s): every ClientApp starts cold", flwr.__version__, FLOWER_VERSION)
        return False
    _flower_launch().subprocess = _LaunchThroughZygote(zygote)
    return True


def main() -> None:
    """``flower-superexec`` with a warm ClientApp (same arguments)."""
    zygote = Zygote.start()  # before anything opens a channel or starts a thread
    if not install(zygote):
        os.kill(zygote.pid, signal.SIGTERM)
    from flwr.supercore.cli import flower_superexec

    sys.argv[0] = "flower-superexec"
    flower_superexec()


if __name__ == "__main__":
    main()
