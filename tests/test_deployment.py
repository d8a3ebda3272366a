"""Deployment: credentials, run config, the Docker entrypoint, and real Flower processes on 127.0.0.1.

The tests marked ``deployment`` start real ``flower-superlink`` / ``fedkd-supernode`` processes (TLS and
SuperNode authentication on) and stop every one by PID in a ``finally``. A deployment round costs 7-12 s of
Flower's fixed latency plus a fresh ClientApp process per message, so the runs are tiny: digits, 3 nodes,
2 rounds, an MLP, a 100-image transfer set.
"""
import contextlib
import datetime as dt
from unittest import mock
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import tomllib
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from fedkd.cli import main as fedkd_main
from fedkd.config import ConfigError, make_config, schema
from fedkd.deploy import credentials as creds
from fedkd.deploy.flwr_cli import FINISHED_OK, FlwrCli, flower_env, write_connection
from fedkd.cli.simulation import run_simulation
from fedkd.deploy.local import NODE_ACCEPTED, LocalFederation, LocalSetup, client_threads, round_records
from fedkd.deploy.processes import (ProcessGroup, descendants, free_port, is_clientapp, port_open, still_running,
                                   wait_until)
from fedkd.deploy.run_config import app_config_keys, run_config_string, toml_value
from fedkd.deploy.warm_clientapp import FORKED_LOG
from fedkd.prometheus import parse_metrics
from helpers import scrape_metrics

ROOT = Path(__file__).resolve().parents[1]
ENTRYPOINT = ROOT / "docker" / "entrypoint.sh"
TINY = {"num_clients": 3, "rounds": 2, "revisit_epochs": 2, "digest_epochs": 1, "transfer_size": 100,
        "local_test_size": 50, "global_test_size": 300, "models": "mlp", "seed": 3}


@pytest.fixture(scope="module")
def credentials_dir(tmp_path_factory):
    return creds.make_credentials(tmp_path_factory.mktemp("creds"), sans=["superlink", "10.1.2.3"], nodes=3)


# ---------------------------------------------------------------- credentials

def test_a_federation_gets_distinct_ports():
    """One free-port probe after another can return the same port (it happened: a SuperNode given the
    SuperLink's port found it open and died unseen); a federation's ports are chosen while all are held."""
    from fedkd.deploy.processes import free_port, free_ports

    ports = free_ports(40)
    assert len(set(ports)) == 40 and all(0 < p < 65536 for p in ports)
    assert free_port(exclude=set(ports)) not in ports


def test_credentials_cover_loopback_and_given_names(credentials_dir):
    c = credentials_dir
    cert = creds.load_certificate(c.server_cert)
    assert creds.certificate_names(cert) == {"localhost", "127.0.0.1", "superlink", "10.1.2.3"}
    creds.check_tls_files(c.ca_cert, c.server_cert, c.server_key, must_cover=("superlink", "127.0.0.1"))
    for key in c.node_keys:
        creds.check_node_key(key.private)
        assert key.public.read_text().startswith("ecdsa-sha2-nistp384 ")
        assert key.private.stat().st_mode & 0o077 == 0  # private keys: owner only
    assert c.ca_key.stat().st_mode & 0o077 == 0 and c.server_key.stat().st_mode & 0o077 == 0


def test_a_second_call_keeps_the_ca_and_the_node_keys(tmp_path):
    first = creds.make_credentials(tmp_path, nodes=1)
    ca, key0 = first.ca_cert.read_bytes(), first.node_keys[0].public.read_bytes()
    second = creds.make_credentials(tmp_path, sans=["node.example"], nodes=2)
    assert second.ca_cert.read_bytes() == ca and second.node_keys[0].public.read_bytes() == key0
    assert second.node_keys[1].private in second.created and first.node_keys[0].private not in second.created
    assert "node.example" in creds.certificate_names(creds.load_certificate(second.server_cert))
    creds.check_tls_files(second.ca_cert, second.server_cert, second.server_key)


def test_tls_files_that_would_fail_later_are_refused_by_name(tmp_path, credentials_dir):
    c = credentials_dir
    with pytest.raises(creds.CredentialError, match="certificate file not found: .*missing.pem"):
        creds.check_tls_files(c.ca_cert, tmp_path / "missing.pem", c.server_key)
    other = creds.make_credentials(tmp_path / "other")
    with pytest.raises(creds.CredentialError, match="is not the private key of"):
        creds.check_tls_files(c.ca_cert, c.server_cert, other.server_key)
    with pytest.raises(creds.CredentialError, match="was not signed by the CA"):
        creds.check_tls_files(c.ca_cert, other.server_cert, other.server_key)
    # a certificate without 127.0.0.1: the SuperLink's own SuperExec could not connect to it
    key = ec.generate_private_key(ec.SECP256R1())
    ca_key = serialization.load_pem_private_key(c.ca_key.read_bytes(), None)
    only_dns = creds._server_certificate(key, creds.load_certificate(c.ca_cert), ca_key,
                                         [x509.DNSName("superlink")], days=1)
    (tmp_path / "dns.pem").write_bytes(only_dns.public_bytes(serialization.Encoding.PEM))
    with pytest.raises(creds.CredentialError, match="does not cover localhost, 127.0.0.1"):
        creds.check_tls_files(c.ca_cert, tmp_path / "dns.pem")
    (tmp_path / "junk.pem").write_text("not a certificate")
    with pytest.raises(creds.CredentialError, match="junk.pem is not a PEM certificate"):
        creds.check_tls_files(tmp_path / "junk.pem")


def test_node_keys_must_be_openssh_ecdsa(tmp_path):
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    (tmp_path / "rsa").write_bytes(rsa_key.private_bytes(serialization.Encoding.PEM,
                                                         serialization.PrivateFormat.OpenSSH,
                                                         serialization.NoEncryption()))
    with pytest.raises(creds.CredentialError, match="Flower needs an ECDSA key"):
        creds.check_node_key(tmp_path / "rsa")
    with pytest.raises(creds.CredentialError, match="SuperNode private key file not found"):
        creds.check_node_key(tmp_path / "absent")
    with pytest.raises(creds.CredentialError, match="neither an IP address nor a host name"):
        creds.make_credentials(tmp_path / "x", sans=["bad name!"])


def test_certs_command_writes_a_credentials_folder(tmp_path, capsys):
    assert fedkd_main(["certs", "--out", str(tmp_path), "--san", "link.example", "--nodes", "2"]) == 0
    assert (tmp_path / "keys" / "node-1.pub").is_file() and "keep" in capsys.readouterr().out
    cert = creds.load_certificate(tmp_path / "server.pem")
    assert cert.not_valid_after_utc - dt.datetime.now(dt.timezone.utc) > dt.timedelta(days=300)


# ---------------------------------------------------------------- run config

def test_run_config_string_survives_flowers_own_parser():
    from flwr.common.config import parse_config_args

    cfg = make_config({**TINY, "out": "/tmp/a run dir", "knfu.include_self": True, "lr": 1e-4,
                       "models": "cnn_small,mlp"})
    parsed = parse_config_args([run_config_string(cfg)])
    assert make_config(parsed) == cfg  # what the ServerApp rebuilds is what we sent


def test_the_apps_config_table_lists_every_key_with_its_default():
    table = app_config_keys(ROOT)
    missing = sorted(set(schema()) - set(table))
    assert not missing, f"pyproject.toml [tool.flwr.app.config] lacks {missing}: `flwr run --run-config` " \
                        "would refuse them; run `python -m fedkd.deploy.run_config --write pyproject.toml`"
    assert make_config(table) == make_config({})  # the table's values are fedkd's defaults
    assert not set(table) - set(schema()), "the table has keys fedkd does not know"


def test_rewriting_the_table_touches_nothing_else(tmp_path):
    from fedkd.deploy.run_config import rewrite_app_config_table

    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text('[project]\nname = "x"\n\n[tool.flwr.app.config]\nrounds = 5\n\n'
                         '[tool.other]\nkeep = true\n')
    rewrite_app_config_table(pyproject)
    data = tomllib.loads(pyproject.read_text())
    assert data["project"] == {"name": "x"} and data["tool"]["other"] == {"keep": True}
    assert set(app_config_keys(tmp_path)) == set(schema())


def test_keys_the_app_cannot_take_are_refused_before_submitting():
    cfg = make_config({"rounds": 3})
    assert run_config_string(cfg, {"rounds": 5}) == "rounds=3"  # defaults of undeclared keys are left out
    with pytest.raises(ConfigError, match="lacks rounds"):
        run_config_string(cfg, {"dataset": "digits"})
    with pytest.raises(ConfigError, match="cannot travel"):
        toml_value("out", 'a"b')


# ---------------------------------------------------------------- refused before anything starts

@pytest.mark.parametrize("args, message", [
    (["--credentials", "{tmp}/no-such-folder"], "credentials folder not found: .*no-such-folder"),
    (["--credentials", "{empty}"], "file not found: .*ca.crt"),
    (["--set", "rounds=0"], "'rounds'"),
    (["--set", "no_such_key=1"], "unknown config key 'no_such_key'"),
    (["--insecure", "--auth"], "--auth needs TLS"),
    (["--nodes", "0"], "'num_clients'"),
])
def test_federation_refuses_bad_input_before_starting_anything(tmp_path, capsys, args, message):
    (tmp_path / "empty").mkdir()
    workdir = tmp_path / "work"
    argv = ["federation", "--workdir", str(workdir)] + [a.format(tmp=tmp_path, empty=tmp_path / "empty")
                                                        for a in args]
    assert fedkd_main(argv) == 2
    err = capsys.readouterr().err
    assert re.search(message, err), err
    assert not (workdir / "logs").exists()  # no process was started


def test_a_workdir_packed_into_the_app_bundle_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="not in its .gitignore"):
        LocalFederation(LocalSetup(nodes=1, workdir=ROOT / "fedkd-scratch-federation"))


# ---------------------------------------------------------------- process bookkeeping

class _ScriptedStatus(FlwrCli):
    """``flwr ls`` answers from a script (the schedule of the asking is under test, not Flower)."""

    def __init__(self, finished_after_hint: bool):
        super().__init__(env={}, connection="local")
        self.asked: list[float] = []
        self.hint_at = time.monotonic() + 0.5
        self.finished_after_hint = finished_after_hint

    def hint(self) -> bool:
        return time.monotonic() >= self.hint_at

    def run_info(self, run_id: int) -> dict:
        self.asked.append(time.monotonic())
        done = self.finished_after_hint and self.hint()
        return {"status": "finished:completed" if done else "running"}


def test_waiting_asks_flwr_ls_rarely_until_the_run_folder_says_it_ended():
    """Each `flwr ls` is a new process (2.4 CPU s here): without the hint, the asks back off; the summary file's
    appearance makes the wait ask at once."""
    cli = _ScriptedStatus(finished_after_hint=True)
    info = cli.wait(1, timeout=30, poll=0.05, max_poll=0.4, tick=0.01, finished_hint=cli.hint)
    assert info["status"] == FINISHED_OK
    before = [t for t in cli.asked if t < cli.hint_at]
    assert len(before) <= 5  # 0, 0.05, 0.15, 0.35 s (+1 for timing slack); every 0.05 s would be 10
    assert cli.asked[-1] - cli.hint_at < 0.2  # asked right after the hint, not at the next backed-off slot
    # a run that ends without the hint (a crashed ServerApp writes no summary) is still found by asking
    crashed = _ScriptedStatus(finished_after_hint=False)
    crashed.run_info = lambda run_id: (crashed.asked.append(time.monotonic()),
                                       {"status": "finished:failed" if len(crashed.asked) > 3 else "running"})[1]
    assert crashed.wait(1, timeout=30, poll=0.05, max_poll=0.4, tick=0.01,
                        finished_hint=lambda: False)["status"] == "finished:failed"


def test_stopping_a_process_also_stops_the_children_it_left(tmp_path):
    group = ProcessGroup(dict(os.environ), cwd=tmp_path, log_dir=tmp_path)
    parent = group.start("parent", ["bash", "-c", "sleep 300 & sleep 300 & wait"])
    try:
        wait_until(lambda: len(descendants(parent.pid)) == 2, 20, "two children")
        children = descendants(parent.pid)
        group.stop(parent, grace=5)
        assert not parent.alive()
        assert not any(still_running(c) for c in children)
    finally:
        group.close()


# ---------------------------------------------------------------- Docker entrypoint, run natively

def entrypoint(role: str, env: dict, *args: str, dry_run: bool = True) -> subprocess.CompletedProcess:
    argv = ["bash", str(ENTRYPOINT), role] + (["--dry-run"] if dry_run else []) + list(args)
    full_env = {"PATH": os.environ["PATH"], "FLWR_HOME": "/nonexistent-never-created", **env}
    return subprocess.run(argv, capture_output=True, text=True, env=full_env, timeout=30)


def test_entrypoint_builds_each_roles_command(credentials_dir):
    certs = {"FEDKD_CERTS": str(credentials_dir.root)}
    link = entrypoint("superlink", certs).stdout.split()
    assert link[0] == "flower-superlink" and "--enable-supernode-auth" in link
    assert link[link.index("--ssl-certfile") + 1] == str(credentials_dir.server_cert)
    assert link[link.index("--fleet-api-address") + 1] == "0.0.0.0:9092"

    node = entrypoint("supernode", {**certs, "FEDKD_SUPERLINK": "link:9092", "FEDKD_PARTITION_ID": "2",
                                    "FEDKD_NUM_PARTITIONS": "3"}, "--max-retries", "4")
    assert node.returncode == 0, node.stderr
    assert "partition-id=2\\ num-partitions=3" in node.stdout and "state-dir=" in node.stdout
    assert f"auth-key=\\\"{credentials_dir.node_keys[2].private}" in node.stdout
    assert f"--auth-supernode-private-key {credentials_dir.node_keys[2].private}" in node.stdout
    assert node.stdout.split()[-2:] == ["--max-retries", "4"]

    insecure = entrypoint("supernode", {"FEDKD_INSECURE": "1", "FEDKD_SUPERLINK": "l:9092",
                                        "FEDKD_PARTITION_ID": "0", "FEDKD_NUM_PARTITIONS": "1"}).stdout
    assert "--insecure" in insecure and "--auth-supernode" not in insecure  # auth needs TLS

    app = entrypoint("app", {**certs, "FEDKD_CONTROL": "link:8000", "FEDKD_SET": "rounds=2 metrics.port=9400"})
    assert app.stdout.split() == ["fedkd", "submit", "--app", "/app", "--superlink", "link:8000", "--ca",
                                  str(credentials_dir.ca_cert), "--set", "rounds=2", "--set", "metrics.port=9400"]
    register = entrypoint("register", {**certs, "FEDKD_CONTROL": "link:8000"}).stdout.split()
    assert register[:2] == ["fedkd", "register"] and register[-3:] == [str(k.public) for k in
                                                                        credentials_dir.node_keys]


@pytest.mark.parametrize("role, env, message", [
    ("supernode", {"FEDKD_SUPERLINK": "l:9092", "FEDKD_NUM_PARTITIONS": "3"}, "FEDKD_PARTITION_ID is required"),
    ("supernode", {"FEDKD_SUPERLINK": "l:9092", "FEDKD_PARTITION_ID": "3", "FEDKD_NUM_PARTITIONS": "3"},
     "must be below FEDKD_NUM_PARTITIONS"),
    ("supernode", {"FEDKD_SUPERLINK": "l:9092", "FEDKD_PARTITION_ID": "x", "FEDKD_NUM_PARTITIONS": "3"},
     "FEDKD_PARTITION_ID must be a non-negative integer"),
    ("superlink", {"FEDKD_CERTS": "/no/certs"}, "CA certificate not found: /no/certs/ca.crt"),
    ("superlink", {"FEDKD_AUTH": "maybe"}, "FEDKD_AUTH must be 0 or 1"),
    ("app", {"FEDKD_INSECURE": "1"}, "FEDKD_CONTROL is required"),
    ("app", {"FEDKD_INSECURE": "1", "FEDKD_CONTROL": "l:8000", "FEDKD_SET": "rounds"}, "expected KEY=VALUE"),
    ("launch", {}, "unknown role 'launch'"),
])
def test_entrypoint_refuses_bad_arguments(role, env, message):
    done = entrypoint(role, env)
    assert done.returncode == 2 and message in done.stderr, done.stderr


def test_every_compose_service_passes_the_entrypoints_checks(credentials_dir):
    import yaml

    compose = yaml.safe_load((ROOT / "docker" / "compose.yaml").read_text())
    services = compose["services"]
    assert {"superlink", "register", "node-0", "node-1", "node-2", "app"} <= set(services)
    for name, service in services.items():
        if "image" not in service or not service["image"].startswith("fedkd"):
            continue  # prometheus, grafana
        env = {k: str(v) for k, v in (service.get("environment") or {}).items()}
        env["FEDKD_CERTS"] = str(credentials_dir.root)  # stands in for the /certs mount
        done = entrypoint(service["command"][0], env, *service["command"][1:])
        assert done.returncode == 0, f"{name}: {done.stderr}"
    partitions = sorted(services[f"node-{i}"]["environment"]["FEDKD_PARTITION_ID"] for i in range(3))
    assert partitions == ["0", "1", "2"]
    for name in ("superlink", "node-0", "node-1", "node-2"):  # every SuperExec looks for tasks often
        assert "FLWR_SUPEREXEC_TASK_POLL_INTERVAL" in services[name]["environment"], name
    assert "superlink" in creds.certificate_names(creds.load_certificate(credentials_dir.server_cert))


def test_grafana_dashboard_queries_exported_metrics():
    from prometheus_client import generate_latest

    from fedkd.prometheus import ServerMetrics

    dashboard = json.loads((ROOT / "docker" / "grafana-dashboard.json").read_text())
    exported = set()  # every sample name the exporter can produce, labelled or not yet observed
    suffixes = {"counter": ("_total", "_created"), "gauge": ("",), "histogram": ("_bucket", "_count", "_sum",
                                                                               "_created"), "info": ("_info",)}
    for family in ServerMetrics(make_config({}).metrics).registry.collect():
        exported |= {family.name + suffix for suffix in suffixes[family.type]}
    assert {name.split("{")[0] for name in parse_metrics(generate_latest(ServerMetrics().registry).decode())} \
        <= exported
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            for name in re.findall(r"fedkd_[a-z_]+", target["expr"]):
                assert name in exported, f"panel {panel['title']!r} queries unknown metric {name}"


# ---------------------------------------------------------------- real processes

@pytest.mark.deployment
def test_federation_on_exported_folders_equals_the_simulation(tmp_path):
    """`fedkd export` then `fedkd federation --data`: TLS + node auth, each node reads only its own folder,
    the ServerApp only the transfer set; the numbers equal `fedkd simulate` of the same config and seed."""
    data, workdir, metrics_port = tmp_path / "data", tmp_path / "fed", free_port()
    sets = [f"{k}={v}" for k, v in TINY.items()]
    assert fedkd_main(["export", "--out", str(data)] + [a for kv in sets for a in ("--set", kv)]) == 0
    simulated = run_simulation(make_config(TINY), tmp_path / "sim", progress=False)

    argv = [sys.executable, "-m", "fedkd.cli", "federation", "--nodes", "3", "--workdir", str(workdir),
            "--data", str(data)]
    for item in sets + [f"metrics.port={metrics_port}", "metrics.linger=5"]:
        argv += ["--set", item]
    stop, scrapes = threading.Event(), []
    scraper = threading.Thread(target=scrape_metrics, args=(metrics_port, stop, scrapes), daemon=True)
    scraper.start()
    with open(tmp_path / "launcher.log", "w") as log:
        launcher = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    try:
        code = launcher.wait(timeout=900)
    finally:
        if launcher.poll() is None:  # SIGTERM makes the launcher stop its own processes first
            launcher.terminate()
            try:
                launcher.wait(timeout=60)
            except subprocess.TimeoutExpired:
                launcher.kill()
        stop.set()
        scraper.join(timeout=5)
    output = (tmp_path / "launcher.log").read_text()
    assert code == 0, output[-4000:]

    summary = json.loads((workdir / "run" / "summary.json").read_text())
    rounds = [json.loads(line) for line in (workdir / "run" / "metrics.jsonl").read_text().splitlines()]
    assert summary["rounds"] == 2 and [r["replies"] for r in rounds] == [3, 3]
    assert summary["missing_replies"] == 0 and summary["rejected_replies"] == {}
    assert summary["identity_alarms"] == {}
    for key in ("alma_per_round", "global_acc_per_round", "per_client_local_acc", "per_client_global_acc"):
        assert summary[key] == simulated[key], key  # the bridge: same data, same seeds, same numbers
    for node in range(3):  # fedkd-supernode forked every ClientApp warm, and the numbers above are the same
        node_log = (workdir / "logs" / f"supernode-{node}.log").read_text()
        assert node_log.count(FORKED_LOG) >= 2, node_log[-3000:]
    assert "label_histograms" not in rounds[0]  # the server records nothing of a node's data unless it opts in
    server_config = json.loads((workdir / "run" / "config.json").read_text())
    assert server_config["transfer_dir"].endswith("transfer") and server_config["server.identity_registry"]
    assert "2 rounds" in output and "finished:completed" in output

    link_log = (workdir / "logs" / "superlink.log").read_text()
    assert "--enable-supernode-auth" in link_log and "--ssl-certfile" in link_log
    assert link_log.count("/v1/control/register-node") == 3  # every node key registered first
    for i in range(3):
        node_log = (workdir / "logs" / f"supernode-{i}.log").read_text()
        assert "--auth-supernode-private-key" in node_log and f"node-{i}" in node_log
        assert (workdir / "nodes" / f"node-{i}" / "model.pt").is_file()  # on the node's own disk

    assert scrapes, "/metrics was never reachable during the run"
    final = scrapes[-1]
    assert final["fedkd_rounds_completed_total"] == 2 and final["fedkd_replies_received_total"] == 6
    assert final["fedkd_active_nodes"] == 3 and final["fedkd_round_duration_seconds_count"] == 2
    assert abs(final["fedkd_alma"] - summary["alma"]) < 1e-9
    assert final["fedkd_bytes_up_total"] > 2 * 3 * 100 * 10 * 4  # 2 rounds x 3 replies x M x C float32
    launcher_scrape = parse_metrics((workdir / "run" / "metrics.prom").read_text())
    assert launcher_scrape["fedkd_rounds_completed_total"] == 2


@pytest.fixture(scope="module")
def hostile_federation(tmp_path_factory):
    """Four nodes on exported folders, TLS + auth, 7 rounds, and what goes wrong in real deployments:

    node 2's folder has a class the transfer set does not know; node 3 reads another copy of the transfer
    set (one image changed); an impostor with a registered key of its own claims client 0; node 1 is
    killed after round 1 and restarted with its own key.
    """
    root = tmp_path_factory.mktemp("hostile")
    data = root / "data"
    # 7 rounds: node 1 is re-admitted only after its missed heartbeats (about 20 s here), while rounds go on
    cfg = make_config({**TINY, "num_clients": 4, "rounds": 7, "server.reply_timeout": 150.0,
                       "server.min_contributors": 1,  # a pool of 3: a returning client must get targets
                       # the restarted node's cold ClientApp must answer its identify query in the round it
                       # is asked, not a later one, or round 5 may be its first and no round follows it
                       "server.identify_timeout": 90.0})
    assert fedkd_main(["export", "--out", str(data)] + [a for k, v in {**TINY, "num_clients": 4}.items()
                                                        for a in ("--set", f"{k}={v}")]) == 0
    (data / "node-2" / "train" / "banana").mkdir()
    (data / "node-2" / "train" / "banana" / "000000.png").write_bytes(
        next((data / "node-2" / "train").rglob("*.png")).read_bytes())
    other_transfer = root / "other-transfer"
    subprocess.run(["cp", "-r", str(data / "transfer"), str(other_transfer)], check=True)
    first, second = sorted(other_transfer.glob("*.png"))[:2]
    first.write_bytes(second.read_bytes())

    # check_data=False: as on separate hosts, node 2 alone finds its bad folder. A 10 s heartbeat
    # (FEDKD_SUPERNODE_HEARTBEAT_INTERVAL; Flower's is 30 s): the SuperLink takes the killed node for offline
    # about 20 s after its last heartbeat, and only then admits the restarted one under the same key, which
    # must happen while rounds remain (the environment is read when the federation is made).
    with mock.patch.dict(os.environ, {"FEDKD_SUPERNODE_HEARTBEAT_INTERVAL": "10"}):
        fed = LocalFederation(LocalSetup(nodes=4, workdir=root / "fed", data=data, check_data=False),
                              say=lambda m: print(m, flush=True))
    try:
        creds.make_credentials(fed.credentials.root, nodes=5)  # node-4: the impostor's own key
        fed.start(node_configs={3: {"transfer-dir": str(other_transfer)}})
        fed.cli.register(fed.credentials.root / "keys" / "node-4.pub")  # the SuperLink lets it in ...
        impostor = fed.start_extra_node("impostor", 0, private_key=fed.credentials.root / "keys" / "node-4")
        run_id, cfg = fed.submit(cfg)  # ... but the registry binds client 0 to node-0's key only
        wait_until(lambda: len(round_records(Path(cfg["out"]))) >= 1, 600, "round 1", [fed.link])
        fed.kill_node(1)
        # restarted once the SuperLink has found it offline (round 2 ends with its "node unavailable"
        # reply), so that its first try is accepted and rounds remain after its return
        wait_until(lambda: len(round_records(Path(cfg["out"]))) >= 2, 600, "round 2", [fed.link])
        fed.restart_node(1, retry_delay=2.0)
        result = fed.wait(run_id, cfg, timeout=900)
        impostor_joined = impostor.alive() or impostor.exit_code() == 0
    finally:
        fed.close()  # now, not at the module's end: idle nodes polling the link would slow every later test
    return result, impostor_joined


@pytest.mark.deployment
def test_bad_node_data_is_refused_with_its_reason_and_the_run_goes_on(hostile_federation):
    result, _ = hostile_federation
    assert result.ok
    rounds = [json.loads(line) for line in (result.out_dir / "metrics.jsonl").read_text().splitlines()]
    assert len(rounds) == 7
    for r in rounds:
        assert "2" not in r["per_client_local_acc"] and "3" not in r["per_client_local_acc"]
        assert r["rejected"].get("error_reply", 0) >= 2
    log = result.log_path.read_text()
    assert "banana" in log and "transfer set mismatch" in log  # each node's refusal says why


@pytest.mark.deployment
def test_an_impostor_is_refused_and_the_victim_keeps_its_place(hostile_federation):
    result, impostor_joined = hostile_federation
    assert impostor_joined  # it joined the SuperLink: only fedkd refuses it
    assert result.summary["identity_alarms"].get("identity_mismatch", 0) >= 1
    rounds = [json.loads(line) for line in (result.out_dir / "metrics.jsonl").read_text().splitlines()]
    assert all(0 in r["fused_clients"] for r in rounds)  # client 0's own node replied every round
    assert all(r["nodes"] >= 4 for r in rounds)
    assert "claims client 0 without that client's key" in result.log_path.read_text()


@pytest.mark.deployment
def test_a_restarted_node_gets_its_id_back(hostile_federation):
    result, _ = hostile_federation
    rounds = [json.loads(line) for line in (result.out_dir / "metrics.jsonl").read_text().splitlines()]
    assert "1" in rounds[0]["per_client_local_acc"]
    # back under its own key (a new node id): its replies are accepted as client 1's again ...
    back = next(i for i, r in enumerate(rounds) if i > 0 and "1" in r["per_client_local_acc"])
    assert all("1" in r["per_client_local_acc"] for r in rounds[back:])
    # ... and from the round after its return it distils its own targets again
    assert back + 1 < len(rounds) and 1 in rounds[back + 1]["distilled_clients"]


@pytest.mark.deployment
def test_a_deployed_run_that_achieved_nothing_is_failed_and_names_each_node(tmp_path):
    """Both nodes read another copy of the transfer set (one image changed): every reply is refused. The run
    is finished:failed for Flower too (flwr ls, fedkd submit), and the console names each node's reason."""
    data = tmp_path / "data"
    two = {**TINY, "num_clients": 2, "rounds": 2}
    assert fedkd_main(["export", "--out", str(data)] + [a for k, v in two.items() for a in ("--set", f"{k}={v}")]) == 0
    other = tmp_path / "other-transfer"
    subprocess.run(["cp", "-r", str(data / "transfer"), str(other)], check=True)
    first, second = sorted(other.glob("*.png"))[:2]
    first.write_bytes(second.read_bytes())
    shouted: list[str] = []
    fed = LocalFederation(LocalSetup(nodes=2, workdir=tmp_path / "fed", data=data, tls=False, auth=False),
                          say=lambda m: print(m, flush=True), shout=shouted.append)
    try:
        fed.start(node_configs={i: {"transfer-dir": str(other)} for i in range(2)})
        run_id, cfg = fed.submit(make_config(two))
        result = fed.wait(run_id, cfg, timeout=600)
    finally:
        fed.close()
    assert result.status == "finished:failed" and not result.ok
    assert result.summary["failure"] == "no reply was valid in any of the 2 rounds"
    for client in (0, 1):
        assert any(line.startswith(f"round 1: client {client} refused:") and "transfer set mismatch" in line
                   for line in shouted), shouted
    assert any("the run FAILED: no reply was valid" in line for line in shouted)


@pytest.fixture(scope="module")
def node_loss_run(tmp_path_factory):
    """One TLS + auth federation of 3 nodes; two intruders try to join; node 2 is SIGKILLed mid-round 2.

    (Round 1 begins with the identify handshake, which also starts ClientApp processes, so the kill waits
    for round 1's record and then for node 2's next ClientApp: its training of round 2.)"""
    workdir = tmp_path_factory.mktemp("node-loss")
    # a 10 s heartbeat: the SuperLink answers for the dead node ("node unavailable") about 20 s after its last
    # heartbeat instead of Flower's minute
    with mock.patch.dict(os.environ, {"FEDKD_SUPERNODE_HEARTBEAT_INTERVAL": "10"}):
        fed = LocalFederation(LocalSetup(nodes=3, workdir=workdir), say=lambda msg: print(msg, flush=True))
    try:
        creds.make_credentials(fed.credentials.root, nodes=4)  # node-3: a key nobody registered
        fed.start()
        intruders = {
            "unregistered": fed.start_extra_node("intruder-unregistered", 2,
                                                 private_key=fed.credentials.root / "keys" / "node-3"),
            "insecure": fed.start_extra_node("intruder-insecure", 1, tls=False, private_key=None,
                                             max_retries=2, max_wait_time=20),
        }
        # a generous reply timeout: the healthy nodes must not miss it on a loaded machine
        run_id, cfg = fed.submit(make_config({**TINY, "rounds": 3, "server.reply_timeout": 150.0}))
        victim = fed.nodes[2]
        wait_until(lambda: len(round_records(Path(cfg["out"]))) >= 1, 600, "round 1", [fed.link])
        wait_until(lambda: any(is_clientapp(c.pid) for c in descendants(victim.pid)),
                   300, "node 2 to run its ClientApp of round 2", [victim], poll=0.3)
        fed.kill_node(2)
        result = fed.wait(run_id, cfg, timeout=900)
        for proc in intruders.values():
            wait_until(lambda p=proc: not p.alive(), 120, f"{proc.name} to give up", poll=1)
        for proc in fed.group.processes:
            proc.note_children()
    finally:
        fed.close()  # now, not at the module's end: idle nodes polling the link would slow every later test
    children = [c for proc in fed.group.processes for c in proc.seen_children]
    left_running = [p.name for p in fed.group.processes if p.alive()] + [c for c in children if still_running(c)]
    return result, intruders, left_running


@pytest.mark.deployment
def test_a_node_killed_mid_round_does_not_stop_the_run(node_loss_run):
    result, _, _ = node_loss_run
    assert result.status == FINISHED_OK and result.ok
    rounds = [json.loads(line) for line in (result.out_dir / "metrics.jsonl").read_text().splitlines()]
    assert len(rounds) == 3
    before, killed, after = rounds
    assert before["replies"] == 3
    assert killed["nodes"] == 3 and killed["replies"] == 2
    # the dead node's message: no reply before the timeout, or the SuperLink's "node unavailable" error
    assert killed["missing"] + killed["rejected"].get("error_reply", 0) == 1
    assert after["replies"] == 2
    assert sorted(killed["per_client_local_acc"]) == ["0", "1"]
    lost = result.summary["missing_replies"] + sum(result.summary["rejected_replies"].values())
    assert lost >= 1  # the loss is reported


@pytest.mark.deployment
def test_a_node_with_an_unregistered_key_is_refused(node_loss_run):
    _, intruders, _ = node_loss_run
    proc = intruders["unregistered"]
    assert proc.exit_code() == 1
    assert "[code: 2004] Failed to activate SuperNode" in proc.log_text()


@pytest.mark.deployment
def test_a_node_without_tls_cannot_join_the_tls_link(node_loss_run):
    _, intruders, _ = node_loss_run
    proc = intruders["insecure"]
    assert proc.exit_code() == 1
    log = proc.log_text()
    assert "Exit Code: 305" in log and "UNAVAILABLE" in log


@pytest.mark.deployment
def test_every_process_is_stopped_by_pid(node_loss_run):
    _, _, left_running = node_loss_run  # every process and every child it was seen with, after close()
    assert left_running == []


@pytest.mark.deployment
def test_a_silent_extra_node_costs_the_identify_timeout_once(tmp_path):
    """A registered node that joins and then hangs (SIGSTOP) is asked to identify itself once, waited for at
    most server.identify_timeout once, and never waited for in a train round. Before, it was asked again
    every round with the whole reply timeout: here 2 x 600 s, far beyond the run's 500 s budget. The two
    real nodes train with DP-SGD (the deployment path of ``privacy.dp_sgd``: noise from OS entropy, the
    accountant in each node's state, epsilon in the records)."""
    # a 10-minute heartbeat: the SuperLink keeps the stopped node online for the whole test, however long
    # the run takes to begin on a loaded machine (with Flower's 30 s it could be taken offline before round 1)
    with mock.patch.dict(os.environ, {"FEDKD_SUPERNODE_HEARTBEAT_INTERVAL": "600"}):
        fed = LocalFederation(LocalSetup(nodes=2, workdir=tmp_path / "fed"), say=lambda m: print(m, flush=True))
    silent = None
    try:
        creds.make_credentials(fed.credentials.root, nodes=3)  # node-2: the silent node's own registered key
        fed.start()
        fed.cli.register(fed.credentials.root / "keys" / "node-2.pub")
        silent = fed.start_extra_node("silent", 0, private_key=fed.credentials.root / "keys" / "node-2")
        wait_until(lambda: NODE_ACCEPTED in silent.log_text(), 120, "the extra node to join", [silent])
        os.kill(silent.pid, signal.SIGSTOP)  # connected, then hung: it answers nothing
        cfg = make_config({**TINY, "num_clients": 2, "rounds": 2, "server.reply_timeout": 600.0,
                           "server.identify_timeout": 15.0,  # warm ClientApps answer in a few s
                           "privacy.dp_sgd": True, "privacy.dp_target_epsilon": 8.0})
        run_id, cfg = fed.submit(cfg)
        result = fed.wait(run_id, cfg, timeout=500)
    finally:
        if silent is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(silent.pid, signal.SIGCONT)
        fed.close()
    assert result.ok
    rounds = [json.loads(line) for line in (result.out_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["replies"] for r in rounds] == [2, 2] and all(r["missing"] == 0 for r in rounds)
    assert rounds[0]["nodes"] == 3  # it was connected when the run began ...
    log = result.log_path.read_text()
    assert log.count("did not answer the identify query within 15 s") == 1  # ... and was waited for once
    for r in rounds:
        assert set(r["training_epsilon_per_client"]) == {"0", "1"}
    assert 0 < result.summary["privacy"]["training_epsilon"] <= 8.0 and result.summary["privacy"]["training_delta"] > 0


@pytest.mark.deployment
def test_entrypoint_roles_run_natively(tmp_path, credentials_dir):
    """The container roles without Docker: superlink, register (twice: idempotent), supernode joins."""
    control, fleet, node_port = free_port(), free_port(), free_port()
    env = {**os.environ, "FEDKD_CERTS": str(credentials_dir.root), "FLWR_HOME": str(tmp_path / "home"),
           "FEDKD_CONTROL_HOST": "127.0.0.1", "FEDKD_CONTROL_PORT": str(control),
           "FEDKD_FLEET_ADDRESS": f"127.0.0.1:{fleet}", "FEDKD_DATABASE": str(tmp_path / "link.db"),
           "FEDKD_CONTROL": f"127.0.0.1:{control}", "FEDKD_SUPERLINK": f"127.0.0.1:{fleet}",
           "FEDKD_PARTITION_ID": "1", "FEDKD_NUM_PARTITIONS": "3", "FEDKD_CLIENTAPPIO_PORT": str(node_port),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    group = ProcessGroup(env, cwd=tmp_path, log_dir=tmp_path / "logs")
    try:
        link = group.start("superlink", ["bash", str(ENTRYPOINT), "superlink"])
        wait_until(lambda: port_open("127.0.0.1", control) and port_open("127.0.0.1", fleet), 120,
                   "the SuperLink", [link])
        register = ["bash", str(ENTRYPOINT), "register"]
        first = subprocess.run(register, env=env, capture_output=True, text=True, timeout=180)
        assert first.returncode == 0, first.stdout + first.stderr
        assert first.stdout.count("registered") == 3 and "node id" in first.stdout
        again = subprocess.run(register, env=env, capture_output=True, text=True, timeout=180)
        assert again.returncode == 0 and again.stdout.count("registered already") == 3, again.stderr

        node_id = next(line.split("node id ")[1] for line in first.stdout.splitlines() if "node-1.pub" in line)
        node = group.start("supernode-1", ["bash", str(ENTRYPOINT), "supernode"])
        write_connection(tmp_path / "cli", "link", f"127.0.0.1:{control}", root_certificates=credentials_dir.ca_cert)
        cli = FlwrCli(flower_env(dict(os.environ), FLWR_HOME=str(tmp_path / "cli")), "link")
        wait_until(lambda: {n["node-id"]: n["status"] for n in cli.nodes()}.get(node_id) == "online", 120,
                   f"SuperNode {node_id} (partition 1) to be online", [node, link], poll=1)
    finally:
        group.close()
    assert not any(p.alive() for p in group.processes)


def test_local_nodes_split_the_cores_between_their_torch_threads(monkeypatch):
    """Several ClientApps on the same cores must not each start a thread per core (docs/performance.md §6)."""
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 8)
    assert [client_threads(n) for n in (1, 3, 8, 20)] == ["8", "2", "1", "1"]
    monkeypatch.setenv("OMP_NUM_THREADS", "4")  # the user's choice wins
    assert client_threads(3) == "4"
