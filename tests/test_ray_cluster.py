"""A simulation attached to a real two-node Ray cluster (``sim.ray_address``), its client actors on both nodes.

The cluster is two ``ray start`` processes on 127.0.0.1 from this venv, one CPU each, in their own temp
folder and process groups: a head (``--head --port``) and a second node (``--address``), each run with
``--block`` so that the process started here is the one that owns the node. The simulation then runs
with ``sim.ray_address`` pointing at the head; with one CPU per node and one CPU per client, Flower's
pool holds two client actors, which Ray can only place one per node. Where they ran is read from Ray's
own record: the cluster's actor table in the GCS (``ray.state.actors()``), which keeps every actor,
finished ones too, with the node it was placed on. (``ray.util.state.list_actors`` would need the
dashboard, whose dependencies a minimal Ray install such as this venv's does not have.) Both nodes are
stopped by the PIDs started here -- their whole process groups, SIGTERM then SIGKILL -- never by
``ray stop``, which would stop every Ray on the machine.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from fedkd.config import make_config

RAY = str(Path(sys.executable).with_name("ray"))
pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_node(args: list[str], log: Path, env: dict) -> subprocess.Popen:
    """``ray start ... --block`` in a new session (its own process group), output to ``log``."""
    with open(log, "w") as fh:
        return subprocess.Popen([RAY, "start", "--block", "--disable-usage-stats", "--num-cpus=1",
                                 "--node-ip-address=127.0.0.1", *args], stdout=fh, stderr=subprocess.STDOUT,
                                env=env, start_new_session=True)


def stop_group(proc: subprocess.Popen, grace: float = 20.0) -> None:
    """SIGTERM the process group started here, wait, then SIGKILL whatever of it is left."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            proc.poll()
            if not group_alive(proc.pid):
                return
            time.sleep(0.2)


def group_alive(pgid: int) -> bool:
    """Whether any process of group ``pgid`` still lives (zombies excluded)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


def ask_cluster(address: str, expression: str):
    """Evaluate ``expression`` (JSON-able) in a short-lived driver connected to the cluster."""
    code = ("import json, ray; ray.init(address=%r, logging_level='ERROR'); "
            "print(json.dumps(%s))" % (address, expression))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    if out.returncode != 0:
        return None
    return json.loads(out.stdout.strip().splitlines()[-1])


NODES = "[{'id': n['NodeID'], 'alive': n['Alive']} for n in ray.nodes()]"
CLIENT_ACTORS = ("[{'class': a['ActorClassName'], 'node': a['Address']['NodeID'], 'state': a['State']} "
                 "for a in ray.state.actors().values() if a['ActorClassName'].endswith('ClientActor')]")


def wait_for_nodes(address: str, count: int, timeout: float = 120.0) -> list[dict]:
    """Ray's node table, once ``count`` nodes are alive."""
    deadline = time.monotonic() + timeout
    nodes: list[dict] = []
    while time.monotonic() < deadline:
        nodes = [n for n in ask_cluster(address, NODES) or [] if n["alive"]]
        if len(nodes) >= count:
            return nodes
        time.sleep(1.0)
    raise AssertionError(f"only {len(nodes)} of {count} Ray nodes came up")


@pytest.fixture
def ray_cluster(tmp_path):
    """Two Ray nodes on 127.0.0.1, one CPU each; yields (address, node ids)."""
    temp = Path(tempfile.mkdtemp(prefix="ray", dir="/tmp"))  # short: Ray's socket paths must fit in 107 bytes
    port = free_port()
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0")
    env.pop("RAY_ADDRESS", None)
    head = start_node(["--head", f"--port={port}", f"--temp-dir={temp}", "--include-dashboard=false"],
                      tmp_path / "head.log", env)
    procs = [head]
    try:
        address = f"127.0.0.1:{port}"
        wait_for_nodes(address, 1)
        procs.append(start_node([f"--address={address}"], tmp_path / "worker.log", env))
        nodes = wait_for_nodes(address, 2)
        yield address, sorted(n["id"] for n in nodes)
    finally:
        for proc in reversed(procs):
            stop_group(proc)
        left = [p.pid for p in procs if group_alive(p.pid)]
        shutil.rmtree(temp, ignore_errors=True)
        assert not left, f"Ray process groups {left} survived SIGKILL"


def test_simulation_attaches_to_a_two_node_cluster_and_runs_on_both(ray_cluster, tmp_path, monkeypatch):
    from server.simulate import backend_config, simulate

    address, node_ids = ray_cluster
    assert len(node_ids) == 2
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    cfg = make_config({"dataset": "digits", "num_clients": 4, "rounds": 2, "transfer_size": 50,
                       "local_test_size": 20, "global_test_size": 50, "digest_epochs": 1, "revisit_epochs": 1,
                       "save_models": False, "sim.ray_address": address, "sim.client_cpus": 1,
                       "sim.num_cpus": 2})  # sim.num_cpus sizes the message window only: the cluster has 2 CPUs
    init = backend_config(cfg)["init_args"]
    assert init["address"] == address and not {"num_cpus", "object_store_memory"} & set(init)

    summary = simulate(cfg, str(tmp_path / "run"), progress=False)
    assert summary["rounds"] == 2 and summary["missing_replies"] == 0 and not summary["rejected_replies"]

    actors = ask_cluster(address, CLIENT_ACTORS)
    ran_on = sorted({a["node"] for a in actors})
    assert len(actors) == 2, actors
    assert ran_on == node_ids  # one client actor on each node, in Ray's own record


def test_ray_address_comes_from_the_environment_too(monkeypatch):
    from server.simulate import backend_config

    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:6399")
    init = backend_config(make_config({"sim.object_store_mb": 500}))["init_args"]
    assert init["address"] == "127.0.0.1:6399" and "num_cpus" not in init and "object_store_memory" not in init
    monkeypatch.delenv("RAY_ADDRESS")
    init = backend_config(make_config({"sim.object_store_mb": 500, "sim.num_cpus": 1}))["init_args"]
    assert "address" not in init and init["num_cpus"] == 1 and init["object_store_memory"] == 500 * 2**20
