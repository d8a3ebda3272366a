"""fedkd-supernode (fedkd/deploy/supernode.py, warm_clientapp.py): written for one Flower version, checked
settings, short waits, and a zygote that forks a real process per request and never loses one.

The whole path (TLS federation, every ClientApp forked warm, numbers equal to the simulation) is
tests/test_deployment.py::test_federation_on_exported_folders_equals_the_simulation."""
from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from fedkd.deploy import supernode, warm_clientapp


def test_installed_flower_is_the_one_the_node_patches_were_written_for():
    import flwr

    for module in (supernode, warm_clientapp):
        assert flwr.__version__ == module.FLOWER_VERSION, (
            f"{module.__name__} shortens Flower {module.FLOWER_VERSION}'s SuperNode waits / ClientApp start, but "
            f"Flower {flwr.__version__} is installed: re-read flwr/supernode/start_client_internal.py and "
            "SubprocessExecutor.launch, port the change and update FLOWER_VERSION/FLOWER_SOURCES_SHA256")
        assert module.flower_sources_sha256() == module.FLOWER_SOURCES_SHA256, (
            f"the Flower sources {module.__name__} relies on changed: re-read them and update the hashes")
    from fedkd.flower_pin import sources_sha256

    assert sources_sha256(supernode._heartbeat_functions()) == supernode.HEARTBEAT_SOURCES_SHA256, (
        "Flower's heartbeat code changed: re-read grpc_request_response and HeartbeatSender._run")


def test_heartbeat_interval_is_checked_and_set_where_flower_reads_it(monkeypatch):
    assert supernode.heartbeat_interval({}) is None  # Flower's own 30 s
    assert supernode.heartbeat_interval({supernode.HEARTBEAT_ENV: "10"}) == 10.0
    for bad in ("9", "0", "-1", "nan", "inf", "1801", "often"):
        with pytest.raises(SystemExit, match=supernode.HEARTBEAT_ENV):
            supernode.heartbeat_interval({supernode.HEARTBEAT_ENV: bad})
    connection, heartbeat = supernode._heartbeat_modules()
    for module in (connection, heartbeat):
        monkeypatch.setattr(module, "HEARTBEAT_DEFAULT_INTERVAL", module.HEARTBEAT_DEFAULT_INTERVAL)
    assert supernode.set_heartbeat_interval(10.0)
    # the interval the node declares on activation and in each heartbeat, and its sender's period
    assert connection.HEARTBEAT_DEFAULT_INTERVAL == heartbeat.HEARTBEAT_DEFAULT_INTERVAL == 10.0
    from flwr.common import constant

    assert constant.HEARTBEAT_DEFAULT_INTERVAL == 30  # Flower's constant itself is untouched


def test_poll_interval_is_checked():
    assert supernode.poll_interval({}) == supernode.DEFAULT_POLL
    assert supernode.poll_interval({supernode.POLL_ENV: "0.5"}) == 0.5
    for bad in ("0", "-1", "nan", "inf", "4", "fast"):
        with pytest.raises(SystemExit, match=supernode.POLL_ENV):
            supernode.poll_interval({supernode.POLL_ENV: bad})
    assert supernode.warm_enabled({}) and not supernode.warm_enabled({supernode.WARM_ENV: "0"})
    with pytest.raises(SystemExit, match=supernode.WARM_ENV):
        supernode.warm_enabled({supernode.WARM_ENV: "maybe"})


def test_short_waits_cap_every_sleep(monkeypatch):
    slept = []
    monkeypatch.setattr(supernode.time, "sleep", slept.append)
    waits = supernode._ShortWaits(0.1)
    waits.sleep(3)     # Flower's wait after an empty pull
    waits.sleep(0.5)   # Flower's wait for a reply
    waits.sleep(0.01)
    assert slept == [0.1, 0.1, 0.01]
    assert waits.monotonic is supernode.time.monotonic  # everything else is the time module's


def test_install_patches_only_the_supernode_module(monkeypatch):
    from flwr.supernode import start_client_internal as node

    monkeypatch.setattr(node, "time", node.time)
    monkeypatch.setattr(node, "subprocess", node.subprocess)
    assert supernode.install(0.2, warm=True)
    assert isinstance(node.time, supernode._ShortWaits) and node.time.poll == 0.2
    assert isinstance(node.subprocess, supernode._WarmSuperExec)
    import time as real_time

    assert real_time.sleep is not node.time.sleep  # the process's own time module is untouched


def test_the_superexec_command_becomes_the_warm_one(monkeypatch):
    started = []
    monkeypatch.setattr(supernode.subprocess, "Popen", lambda args, *a, **k: started.append(args))
    supernode._WarmSuperExec().Popen(["flower-superexec", "--runtime-api-address", "127.0.0.1:1"])
    supernode._WarmSuperExec().Popen(["something-else", "x"])
    assert started == [[sys.executable, "-m", "fedkd.deploy.warm_clientapp", "--runtime-api-address", "127.0.0.1:1"],
                       ["something-else", "x"]]


def _zygote_in_subprocess(tmp_path, requests: list[str]) -> str:
    """Start a zygote in a fresh process whose ClientApp entry point writes its argv to a file, send requests."""
    script = tmp_path / "z.py"
    script.write_text(f"""
import os, sys, time
from fedkd.deploy import warm_clientapp as w
def fake_clientapp():
    if sys.argv[-1] == "crash":
        raise RuntimeError("a ClientApp that dies")
    with open({str(tmp_path)!r} + "/" + sys.argv[-1], "w") as fh:
        fh.write(" ".join(sys.argv) + " " + str(os.getppid()))
    raise SystemExit(0)
import flwr.supernode.cli
flwr.supernode.cli.flwr_clientapp = fake_clientapp
w.PRELOAD = ()
z = w.Zygote.start()
launcher = w._LaunchThroughZygote(z)
for name in {requests!r}:
    if name == "RAW":
        z._pipe.write(b"not json\\n")
    else:
        assert launcher.Popen(["flwr-clientapp", "--token", "t", name]) is None
print(z.pid, flush=True)
time.sleep(1.0)
""")
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(os.getcwd())})
    assert done.returncode == 0, done.stderr
    return done.stdout.strip() + "\n" + done.stderr


def test_the_zygote_forks_one_process_per_request_and_skips_garbage(tmp_path):
    out = _zygote_in_subprocess(tmp_path, ["a", "RAW", "crash", "b"])
    zygote_pid = out.split()[0]
    for name in ("a", "b"):
        deadline = time.monotonic() + 20
        while not (tmp_path / name).exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        argv = (tmp_path / name).read_text().split()
        assert argv[:4] == ["flwr-clientapp", "--token", "t", name]
        assert argv[4] == zygote_pid  # forked by the zygote, not started cold
    # the crashed ClientApp ended its own process only: the request after it was served
    assert out.count(warm_clientapp.FORKED_LOG) == 3 and "malformed request ignored" in out
    assert "a ClientApp that dies" in out


def test_a_launch_the_zygote_cannot_take_starts_cold(monkeypatch):
    class Dead:
        def launch(self, argv, quiet):
            return False

    started = []
    monkeypatch.setattr(warm_clientapp.subprocess, "Popen", lambda args, *a, **k: started.append(args) or "proc")
    assert warm_clientapp._LaunchThroughZygote(Dead()).Popen(["flwr-clientapp", "--token", "t"]) == "proc"
    assert started == [["flwr-clientapp", "--token", "t"]]
