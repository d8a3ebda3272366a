"""``fedkd-supernode``: Flower's SuperNode (same arguments as ``flower-supernode``) without its fixed waits.

Flower 1.39's SuperNode (``flwr.supernode.start_client_internal``) has three latencies no knob sets,
and a deployed round pays each of them (docs/performance.md §6):

- after a pull that found no message it sleeps **3 s** before asking the SuperLink again, so a message
  waits 1.5 s on average before its node even sees it;
- it waits for its ClientApp's reply, and for the reply's contents, in **0.5 s** steps;
- its SuperExec starts a fresh ``flwr-clientapp`` process for every message (about 2.5 s of imports).

A fourth, the heartbeat, decides how soon the SuperLink takes a dead node for dead: Flower's nodes declare a
30 s interval and are offline 2 x 30 s after their last heartbeat, so a killed node's messages wait up to a
minute for the SuperLink's "node unavailable" reply, and a restarted node gets its id back only then.
:data:`HEARTBEAT_ENV` sets the interval the node declares and keeps (Flower's bounds, 10-1800 s; default
Flower's 30 s).

This entry point runs Flower's own SuperNode with the first two shortened to :data:`POLL_ENV` seconds
(default :data:`DEFAULT_POLL`: one small RPC per node per tenth of a second while idle) and its
SuperExec replaced by :mod:`fedkd.deploy.warm_clientapp`, which forks every ClientApp from a process
that has imported torch and Flower's ClientApp runtime already. Both changes touch only waiting and
process start-up: the messages, the ClientApp and what it computes are Flower's and ours as before
(``tests/test_deployment.py`` runs a TLS federation through it and compares the numbers with the simulation's).

Written for Flower 1.39.0; on another version, or if the sources it relies on changed, the node
runs Flower's code unchanged and says so (``tests/test_supernode.py`` fails loudly first).
"""
from __future__ import annotations

import logging
import math
import os
import subprocess
import sys
import time

from fedkd.deploy import warm_clientapp
from fedkd.flower_pin import FLOWER_VERSION, is_pinned_flower, sources_sha256

log = logging.getLogger("fedkd.deploy")

# sha256 of inspect.getsource (fedkd/flower_pin.py) of the two functions whose waits are shortened (time.sleep(3) after an
# empty pull, time.sleep(0.5) while waiting for a reply) and whose SuperExec command is replaced.
FLOWER_SOURCES_SHA256 = {
    "start_client_internal": "bb3df95a5f63b9849fef3ba5fac74c1d01677207e268c37d6895fb6d14399eff",
    "_push_messages": "5f09f2f7a86ced070a9cb343920c8e3ba0c20fda956e7b6d2088965b428f42d2",
}
POLL_ENV = "FEDKD_SUPERNODE_POLL_INTERVAL"
DEFAULT_POLL = 0.1
POLL_RANGE = (0.01, 3.0)  # 3 s is Flower's own wait: longer would only make the node slower than Flower's
HEARTBEAT_ENV = "FEDKD_SUPERNODE_HEARTBEAT_INTERVAL"
HEARTBEAT_RANGE = (10.0, 1800.0)  # what Flower's SuperLink accepts (HEARTBEAT_MIN/MAX_INTERVAL)
# sha256 of the two functions that read Flower's heartbeat constant (the node's declaration and its sender's period)
HEARTBEAT_SOURCES_SHA256 = {
    "grpc_request_response": "2ca8b86b327f4d3eaf40fd91e0156c6384c1f70327e7ad1b7612db53b012713f",
    "HeartbeatSender._run": "b176ff96c68dbee2205f25bbb5f60d932e5cdbd057eb84c2a823fcb1a3a03ca0",
}
WARM_ENV = "FEDKD_WARM_CLIENTAPP"  # "0" starts every ClientApp cold, as flower-supernode does
SUPEREXEC_COMMAND = "flower-superexec"


def _flower_node():
    from flwr.supernode import start_client_internal

    return start_client_internal


def _flower_functions() -> dict:
    node = _flower_node()
    return {name: getattr(node, name) for name in FLOWER_SOURCES_SHA256}


def flower_sources_sha256() -> dict[str, str]:
    return sources_sha256(_flower_functions())


def matches_installed_flower() -> bool:
    return is_pinned_flower(_flower_functions(), FLOWER_SOURCES_SHA256)


def _seconds_from_env(name: str, bounds: tuple[float, float], environ: dict[str, str] | None) -> float | None:
    """``$name`` as seconds within ``bounds``; None when unset or empty; a clear exit otherwise."""
    raw = (os.environ if environ is None else environ).get(name)
    if raw is None or raw.strip() == "":
        return None
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and bounds[0] <= value <= bounds[1]):
        raise SystemExit(f"{name} must be a number of seconds in [{bounds[0]:g}, {bounds[1]:g}], got {raw!r}")
    return value


def poll_interval(environ: dict[str, str] | None = None) -> float:
    """The node's poll interval from ``$FEDKD_SUPERNODE_POLL_INTERVAL`` (seconds), checked."""
    value = _seconds_from_env(POLL_ENV, POLL_RANGE, environ)
    return DEFAULT_POLL if value is None else value


def heartbeat_interval(environ: dict[str, str] | None = None) -> float | None:
    """The heartbeat interval from ``$FEDKD_SUPERNODE_HEARTBEAT_INTERVAL`` (seconds), checked; None: Flower's."""
    return _seconds_from_env(HEARTBEAT_ENV, HEARTBEAT_RANGE, environ)


def _heartbeat_modules():
    from flwr.client.grpc_rere_client import connection
    from flwr.supercore import heartbeat

    return connection, heartbeat


def _heartbeat_functions() -> dict:
    connection, heartbeat = _heartbeat_modules()
    return {"grpc_request_response": connection.grpc_request_response,
            "HeartbeatSender._run": heartbeat.HeartbeatSender._run}


def set_heartbeat_interval(seconds: float) -> bool:
    """Make the node declare, and keep, a heartbeat every ``seconds`` (on the pinned Flower only).

    Flower reads ``HEARTBEAT_DEFAULT_INTERVAL`` from two module globals when it activates the node, sends a
    heartbeat and waits for the next one; both are set, so the declared interval and the real one agree.
    """
    if not is_pinned_flower(_heartbeat_functions(), HEARTBEAT_SOURCES_SHA256):
        import flwr

        log.warning("Flower %s's heartbeat is not the one fedkd/deploy/supernode.py was written for (%s): "
                    "keeping Flower's own interval", flwr.__version__, FLOWER_VERSION)
        return False
    for module in _heartbeat_modules():
        module.HEARTBEAT_DEFAULT_INTERVAL = seconds
    return True


def warm_enabled(environ: dict[str, str] | None = None) -> bool:
    raw = (os.environ if environ is None else environ).get(WARM_ENV, "1").strip().lower()
    if raw not in {"0", "1", "true", "false", "yes", "no"}:
        raise SystemExit(f"{WARM_ENV} must be 0 or 1, got {raw!r}")
    return raw in {"1", "true", "yes"}


class _ShortWaits:
    """Stands in for the ``time`` module inside Flower's SuperNode loop: every sleep at most ``poll``."""

    def __init__(self, poll: float):
        self.poll = poll

    def __getattr__(self, name):
        return getattr(time, name)

    def sleep(self, seconds: float) -> None:
        time.sleep(min(seconds, self.poll))


class _WarmSuperExec:
    """Stands in for ``subprocess`` inside Flower's SuperNode: its SuperExec is fedkd's warm one."""

    def __getattr__(self, name):
        return getattr(subprocess, name)

    def Popen(self, args, *rest, **kwargs):  # noqa: N802 -- the name Flower calls
        if isinstance(args, list) and args and args[0] == SUPEREXEC_COMMAND:
            args = [sys.executable, "-m", warm_clientapp.__name__, *args[1:]]
        return subprocess.Popen(args, *rest, **kwargs)


def install(poll: float, warm: bool) -> bool:
    """Shorten the SuperNode's waits (and make its ClientApps warm) on the Flower this was written for."""
    if not matches_installed_flower():
        import flwr

        log.warning("Flower %s's SuperNode is not the one fedkd/deploy/supernode.py was written for (%s): "
                    "running it unchanged (3 s polls, a cold ClientApp per message)", flwr.__version__, FLOWER_VERSION)
        return False
    node = _flower_node()
    node.time = _ShortWaits(poll)
    if warm:
        node.subprocess = _WarmSuperExec()
    return True


def main() -> None:
    """``flower-supernode`` with short polls and a warm ClientApp; the same arguments."""
    install(poll_interval(), warm_enabled())
    heartbeat = heartbeat_interval()
    if heartbeat is not None:
        set_heartbeat_interval(heartbeat)
    from flwr.supernode.cli import flower_supernode

    sys.argv[0] = "flower-supernode"
    flower_supernode()


if __name__ == "__main__":
    main()
