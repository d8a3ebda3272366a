"""A local federation of real processes on 127.0.0.1: one SuperLink, N SuperNodes, one run.

These are the processes and commands of a multi-host deployment (docs/deploy.md),
all on loopback: ``flower-superlink`` with TLS and SuperNode authentication,
``flwr supernode register`` for every node key, ``flower-supernode`` per
partition, ``flwr run`` with the fedkd config as run config, ``flwr ls`` until the
run has finished, ``flwr log`` for its log. Everything is checked before the
first process starts (the config, the node count, the certificate files, the
app's config table, and with ``--data`` every node's folder and the transfer set), and every process is stopped by PID when the block ends,
on success, on error and on Ctrl-C.

Use :func:`run_local_federation` for one run, or :class:`LocalFederation` step
by step (the tests kill, restart and add nodes between the steps).
"""
from __future__ import annotations

import contextlib
import json
import os
import ssl
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from fedkd.config import Config, ConfigError
from fedkd.deploy import credentials as creds
from fedkd.deploy.flwr_cli import FINISHED_OK, FlwrCli, executable, flower_env, write_connection
from fedkd.deploy.processes import (ManagedProcess, ProcessFailed, ProcessGroup, free_port, free_ports, port_open,
                                    wait_until)
from fedkd.deploy.run_config import app_config_keys, run_config_string
from fedkd.report.refusals import RefusalLog, never_contributed
from fedkd.run_records import read_rounds

PROJECT_ROOT = Path(__file__).resolve().parents[2]  # the project, when installed editable (pip install -e)
CONNECTION = "local"
NODE_ACCEPTED = "SuperNode ID:"  # what flower-supernode logs once the SuperLink has activated it
NO_NETWORK_ENV = {  # Flower would otherwise phone home and try to install dependencies per run
    "FLWR_TELEMETRY_ENABLED": "0", "FLWR_DISABLE_UPDATE_CHECK": "1",
    "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1", "RAY_USAGE_STATS_ENABLED": "0",
}
# Flower's own poll knobs (docs/deploy.md "Round time"): a SuperExec looks for a new task (a ClientApp to
# start for a message, a ServerApp for a run) every FLWR_SUPEREXEC_TASK_POLL_INTERVAL seconds, 1.0 by default;
# every message of a round waits up to that long before its ClientApp process starts. 0.1 s costs one local
# RPC per tenth of a second per SuperExec. A value already in the environment wins.
POLL_ENV = {"FLWR_SUPEREXEC_TASK_POLL_INTERVAL": "0.1"}
# Every node runs fedkd-supernode: Flower's SuperNode with its hard-coded 3 s / 0.5 s waits shortened and a
# warm ClientApp (fedkd/deploy/supernode.py; FEDKD_SUPERNODE_POLL_INTERVAL, FEDKD_WARM_CLIENTAPP=0 for cold).
SUPERNODE_COMMAND = (sys.executable, "-m", "fedkd.deploy.supernode")


def node_config_string(values: dict) -> str:
    """``--node-config`` text: Flower parses each ``key=value`` as TOML, so strings are quoted."""
    def value(v):
        if isinstance(v, str):
            if '"' in v or "\\" in v:
                raise ConfigError(f"node config value {v!r} cannot travel in --node-config")
            return f'"{v}"'
        return str(v)

    return " ".join(f"{k}={value(v)}" for k, v in values.items())


def client_threads(nodes: int) -> str:
    """Torch threads per ClientApp when ``nodes`` SuperNodes share this machine: its cores split between them.

    Why: each ClientApp process otherwise starts one torch thread per core, and several of them on the same
    cores spin against each other; 3 nodes on 2 cores made a 0.1 s client-round take ~16 s
    (docs/performance.md). An ``OMP_NUM_THREADS`` already set by the user wins.
    """
    return os.environ.get("OMP_NUM_THREADS") or str(max(1, (os.cpu_count() or 1) // max(1, nodes)))


def default_app_dir() -> Path:
    """The Flower app to run: ``$FEDKD_APP_DIR``, else this project (editable install), else the cwd."""
    if os.environ.get("FEDKD_APP_DIR"):
        return Path(os.environ["FEDKD_APP_DIR"]).resolve()
    if (PROJECT_ROOT / "pyproject.toml").is_file():
        return PROJECT_ROOT
    return Path.cwd().resolve()


@dataclass
class LocalSetup:
    """What to start; see ``fedkd federation --help``."""

    nodes: int
    workdir: Path
    tls: bool = True
    auth: bool = True
    credentials: Path | None = None  # a folder from `fedkd certs`; None = make one in <workdir>/credentials
    data: Path | None = None  # a `fedkd export` folder: node i reads <data>/node-<i>, the server only <data>/transfer
    app_dir: Path = field(default_factory=default_app_dir)
    ready_timeout: float = 120.0  # seconds for the link or a node to come up (a loaded machine is slow)
    # Read every node folder before any process starts and refuse the run on a problem. Off, the federation
    # behaves as separate hosts do: each node checks only its own folder and refuses its own bad files.
    check_data: bool = True


@dataclass
class LocalResult:
    """How a run through a local federation ended."""

    run_id: int
    status: str
    out_dir: Path
    log_path: Path
    summary: dict | None
    run_info: dict = field(default_factory=dict)
    metrics_text: str | None = None  # the last /metrics scrape, when metrics.port is set

    @property
    def ok(self) -> bool:
        return (self.status == FINISHED_OK and bool(self.summary) and self.summary.get("rounds", 0) > 0
                and not self.summary.get("failure"))


class LocalFederation:
    """A SuperLink and its SuperNodes on 127.0.0.1, started step by step; a context manager."""

    def __init__(self, setup: LocalSetup, say: Callable[[str], None] = print,
                 shout: Callable[[str], None] | None = None):
        self.setup = setup
        self.say = say
        # refusals and failure: on the console even with --quiet (stderr)
        self.shout = shout or (lambda line: print(f"[fedkd federation] {line}", file=sys.stderr, flush=True))
        self.workdir = Path(setup.workdir).resolve()
        self.app_dir = Path(setup.app_dir).resolve()
        self._check_setup()
        self._data_checked: Config | None = None  # the config whose data folders were checked last
        self.app_keys = app_config_keys(self.app_dir)
        self.credentials = self._credentials()
        self.registry = self._identity_registry()

        self.flwr_home = self.workdir / "flwr-home"
        self.env = flower_env({**POLL_ENV, **os.environ}, **NO_NETWORK_ENV, FLWR_HOME=str(self.flwr_home),
                              PYTHONUNBUFFERED="1", OMP_NUM_THREADS=client_threads(setup.nodes))
        # distinct: a node started on the SuperLink's port would find it open and fail unseen
        self.control_port, self.fleet_port, *self.node_ports = free_ports(2 + setup.nodes)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.group = ProcessGroup(self.env, cwd=self.workdir, log_dir=self.workdir / "logs")
        self.link: ManagedProcess | None = None
        self.nodes: dict[int, ManagedProcess] = {}
        self.node_ids: dict[int, int] = {}
        write_connection(self.flwr_home, CONNECTION, f"127.0.0.1:{self.control_port}",
                         root_certificates=self.credentials.ca_cert if setup.tls else None,
                         insecure=not setup.tls)
        self.cli = FlwrCli(self.env, CONNECTION, cwd=self.workdir)

    # ------------------------------------------------------------ checks before anything starts

    def _check_setup(self) -> None:
        s = self.setup
        if s.nodes < 1:
            raise ConfigError(f"--nodes must be >= 1, got {s.nodes}")
        if s.auth and not s.tls:
            raise ConfigError("SuperNode authentication needs TLS: use --tls, or --no-auth with --insecure")
        if not (Path(s.app_dir) / "pyproject.toml").is_file():
            raise ConfigError(f"{s.app_dir} is not a Flower app (no pyproject.toml)")
        for name in ("flower-superlink", "flower-supernode", "flwr"):
            executable(name)
        _check_outside_bundle(self.workdir, self.app_dir)
        if s.data is not None:
            from fedkd.data.export import TRANSFER_DIR, node_dir_name

            missing = [p for p in [Path(s.data) / TRANSFER_DIR] + [Path(s.data) / node_dir_name(i)
                                                                   for i in range(s.nodes)] if not p.is_dir()]
            if missing:
                raise ConfigError(f"--data {s.data} lacks {', '.join(str(p) for p in missing)} (make it with "
                                  "`fedkd export --config FILE --out DIR`)")

    def _identity_registry(self) -> Path | None:
        """With node authentication, client i is bound to node key i: the server checks it (server.identity_registry)."""
        if not self.setup.auth:
            return None
        from fedkd.node_identity import write_registry

        return write_registry(self.workdir / "identities.json",
                              {k.index: k.public for k in self.credentials.node_keys})

    def _credentials(self) -> creds.Credentials:
        """Check the given credentials folder, or make one in the workdir."""
        s = self.setup
        if s.credentials is not None:
            if not Path(s.credentials).is_dir():
                raise creds.CredentialError(f"credentials folder not found: {s.credentials}")
            paths = creds.credential_paths(s.credentials, s.nodes if s.auth else 0)
            if s.tls:
                creds.check_tls_files(paths.ca_cert, paths.server_cert, paths.server_key)
            for key in paths.node_keys:
                creds.check_node_key(key.private)
                creds.check_public_key(key.public)
            return paths
        if not s.tls:
            return creds.credential_paths(self.workdir / "credentials")
        return creds.make_credentials(self.workdir / "credentials", nodes=s.nodes if s.auth else 0)

    def check_config(self, cfg: Config) -> Config:
        """The config this federation can run: ``num_clients`` equals the node count, ``out`` absolute."""
        if cfg["num_clients"] != self.setup.nodes:
            raise ConfigError(f"config key 'num_clients' is {cfg['num_clients']} but the federation has "
                              f"{self.setup.nodes} nodes; they must match")
        out = Path(cfg["out"]) if cfg["out"] else self.workdir / "run"
        cfg = cfg.replace(out=str(out.resolve()))
        if self.registry is not None and not cfg["server.identity_registry"]:
            cfg = cfg.replace(server__identity_registry=str(self.registry))
        if self.setup.data is not None:
            from server.public import check_folders, with_data_dir

            # every node folder and the transfer set are read now: all their problems before any process starts
            cfg = with_data_dir(cfg.replace(data_dir=str(Path(self.setup.data).resolve())))
            if self.setup.check_data and cfg != self._data_checked:
                cfg = self._data_checked = check_folders(cfg, self.setup.nodes)
        run_config_string(cfg, self.app_keys)  # refuses keys the app cannot take, before anything starts
        return cfg

    # ------------------------------------------------------------ processes

    def link_argv(self) -> list[str]:
        argv = [executable("flower-superlink"), "--host", "127.0.0.1", "--port", str(self.control_port),
                "--fleet-api-address", f"127.0.0.1:{self.fleet_port}",
                "--database", str(self.workdir / "superlink.db"), "--disable-runtime-dependency-installation"]
        if self.setup.tls:
            c = self.credentials
            argv += ["--ssl-ca-certfile", str(c.ca_cert), "--ssl-certfile", str(c.server_cert),
                     "--ssl-keyfile", str(c.server_key)]
        else:
            argv.append("--insecure")
        if self.setup.auth:
            argv.append("--enable-supernode-auth")
        return argv

    def node_argv(self, partition: int, *, port: int | None = None, tls: bool | None = None,
                  private_key: Path | None | str = "default", max_retries: int | None = None,
                  max_wait_time: float | None = None, node_config: dict | None = None) -> list[str]:
        """A SuperNode's command line; the keywords override the setup (the tests start intruders)."""
        tls = self.setup.tls if tls is None else tls
        if private_key == "default":
            private_key = self.credentials.node_keys[partition].private if self.setup.auth else None
        extra = node_config or {}
        node_config = {"partition-id": partition, "num-partitions": self.setup.nodes,
                       "state-dir": str(self.workdir / "nodes" / f"node-{partition}")}
        if private_key is not None:
            node_config["auth-key"] = str(private_key)  # the ClientApp proves its client id with it
        if self.setup.data is not None:
            from fedkd.data.export import node_dir_name

            node_config["data-dir"] = str(Path(self.setup.data).resolve() / node_dir_name(partition))
        node_config.update(extra)
        argv = [*SUPERNODE_COMMAND, "--superlink", f"127.0.0.1:{self.fleet_port}",
                "--host", "127.0.0.1", "--port", str(port or self.node_ports[partition]),
                "--node-config", node_config_string(node_config)]
        argv += ["--root-certificates", str(self.credentials.ca_cert)] if tls else ["--insecure"]
        if private_key is not None:
            argv += ["--auth-supernode-private-key", str(private_key)]
        if max_retries is not None:
            argv += ["--max-retries", str(max_retries)]
        if max_wait_time is not None:
            argv += ["--max-wait-time", str(max_wait_time)]
        return argv

    def start_link(self) -> None:
        self.say(f"starting SuperLink: control API 127.0.0.1:{self.control_port}, "
                 f"Fleet API (gRPC) 127.0.0.1:{self.fleet_port}, TLS {'on' if self.setup.tls else 'off'}, "
                 f"node authentication {'on' if self.setup.auth else 'off'}")
        self.link = self.group.start("superlink", self.link_argv())
        wait_until(lambda: self._healthy() and port_open("127.0.0.1", self.fleet_port),
                   self.setup.ready_timeout, "the SuperLink's control and Fleet APIs", [self.link])

    def _healthy(self) -> bool:
        scheme = "https" if self.setup.tls else "http"
        context = ssl.create_default_context(cafile=str(self.credentials.ca_cert)) if self.setup.tls else None
        try:
            with urllib.request.urlopen(f"{scheme}://127.0.0.1:{self.control_port}/health", timeout=2,
                                        context=context) as answer:
                return answer.status == 200
        except OSError:
            return False

    def register_nodes(self) -> None:
        for key in self.credentials.node_keys:
            self.node_ids[key.index] = self.cli.register(key.public)
        if self.node_ids:
            self.say(f"registered {len(self.node_ids)} SuperNode keys")

    def start_node(self, partition: int, wait: bool = True, node_config: dict | None = None) -> ManagedProcess:
        """Start (or restart) the SuperNode of one partition; with ``wait``, until its runtime API listens.

        node_config: extra ``--node-config`` entries (e.g. a node's own ``transfer-dir``)."""
        if not 0 <= partition < self.setup.nodes:
            raise ConfigError(f"partition {partition} is not in [0, {self.setup.nodes})")
        proc = self.group.start(f"supernode-{partition}", self.node_argv(partition, node_config=node_config))
        self.nodes[partition] = proc
        if wait:
            port = self.node_ports[partition]
            wait_until(lambda: port_open("127.0.0.1", port), self.setup.ready_timeout,
                       f"SuperNode {partition} on port {port}", [proc])
        return proc

    def restart_node(self, partition: int, timeout: float = 180.0, retry_delay: float = 10.0) -> ManagedProcess:
        """Start a partition's SuperNode again, as a supervisor would, until the SuperLink accepts it.

        With node authentication the SuperLink refuses the key of a crashed node (code 2004; the node
        exits) until the old session has missed two heartbeats (a minute with Flower's 30 s interval, 20 s
        with FEDKD_SUPERNODE_HEARTBEAT_INTERVAL=10); so this retries.
        """
        deadline = time.monotonic() + timeout
        while True:
            proc = self.start_node(partition, wait=False)
            wait_until(lambda: NODE_ACCEPTED in proc.log_text() or not proc.alive(), self.setup.ready_timeout,
                       f"SuperNode {partition} to be accepted or refused", poll=0.5)
            if proc.alive():
                return proc
            if time.monotonic() + retry_delay > deadline:
                raise ProcessFailed(f"SuperNode {partition} still refused after {timeout:.0f} s; end of "
                                    f"{proc.log_path}:\n{proc.log_tail()}")
            self.say(f"SuperNode {partition} refused (exit {proc.exit_code()}"
                     f"{', code 2004: its old session is still open' if '2004' in proc.log_text() else ''}); "
                     f"retrying in {retry_delay:.0f} s")
            time.sleep(retry_delay)

    def start_extra_node(self, name: str, partition: int, **overrides) -> ManagedProcess:
        """A SuperNode outside the federation's plan (own port and state folder; key/TLS overridden), e.g. an
        intruder claiming ``partition``."""
        node_config = {"state-dir": str(self.workdir / "nodes" / name), **overrides.pop("node_config", {})}
        port = free_port(exclude=self._ports())
        return self.group.start(name, self.node_argv(partition, port=port, node_config=node_config, **overrides))

    def start_nodes(self, node_configs: dict[int, dict] | None = None) -> None:
        self.say(f"starting {self.setup.nodes} SuperNodes")
        for partition in range(self.setup.nodes):
            self.start_node(partition, wait=False, node_config=(node_configs or {}).get(partition))
        for partition, proc in self.nodes.items():
            port = self.node_ports[partition]
            # its port open *and* the SuperLink's activation logged: an open port alone could be another's
            wait_until(lambda: port_open("127.0.0.1", port) and NODE_ACCEPTED in proc.log_text(),
                       self.setup.ready_timeout, f"SuperNode {partition} on port {port} to be accepted", [proc])

    def _ports(self) -> set[int]:
        return {self.control_port, self.fleet_port, *self.node_ports}

    def kill_node(self, partition: int) -> None:
        """SIGKILL one SuperNode, as a crash would."""
        self.group.kill(self.nodes[partition])

    def start(self, node_configs: dict[int, dict] | None = None) -> None:
        self.start_link()
        if self.setup.auth:
            self.register_nodes()
        self.start_nodes(node_configs)

    # ------------------------------------------------------------ the run

    def submit(self, cfg: Config) -> tuple[int, Config]:
        cfg = self.check_config(cfg)
        run_id = self.cli.submit(self.app_dir, run_config_string(cfg, self.app_keys))
        self.say(f"submitted run {run_id}: {cfg['algorithm']} on {cfg['dataset']}, {cfg['rounds']} rounds; "
                 f"output in {cfg['out']}")
        return run_id, cfg

    def wait(self, run_id: int, cfg: Config, timeout: float | None = None, poll: float = 3.0) -> LocalResult:
        """Poll the run until it finishes; scrape /metrics meanwhile when the config serves it."""
        rounds_seen = [0]
        refusals = RefusalLog()

        def progress(info: dict) -> None:
            for proc in self.group.processes:  # remember children, to stop them even if a parent crashes
                proc.note_children()
            for record in round_records(Path(cfg["out"]))[rounds_seen[0]:]:
                rounds_seen[0] += 1
                self.say(describe_round(record, cfg["rounds"]))
                for line in refusals.lines(record):  # each client's reason, first time and when it changes
                    self.shout(line)

        scraper = MetricsScraper(cfg) if cfg["metrics.port"] else contextlib.nullcontext()
        with scraper:
            info = self.cli.wait(run_id, timeout or default_timeout(cfg), poll=poll, on_poll=progress,
                                 finished_hint=lambda: (Path(cfg["out"]) / "summary.json").is_file())
        log_path = self.workdir / f"run-{run_id}.log"
        log_path.write_text(self.cli.log(run_id))
        out = Path(cfg["out"])
        progress(info)  # the rounds written after the last poll
        summary = json.loads((out / "summary.json").read_text()) if (out / "summary.json").is_file() else None
        if refusals.last:
            line = never_contributed(round_records(out), cfg["num_clients"])
            if line:
                self.shout(line)
        if summary and summary.get("failure"):
            self.shout(f"the run FAILED: {summary['failure']}")
        return LocalResult(run_id=run_id, status=str(info.get("status")), out_dir=out, log_path=log_path,
                           summary=summary, run_info=info, metrics_text=getattr(scraper, "last", None))

    def close(self) -> None:
        self.group.close()

    def __enter__(self) -> "LocalFederation":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class MetricsScraper:
    """Scrapes the ServerApp's /metrics every second in a background thread; keeps the last answer.

    The ServerApp's /metrics lives only as long as the run (plus ``metrics.linger``), so polling at the pace
    of ``flwr ls`` (seconds per call) would miss the final round.
    """

    def __init__(self, cfg: Config, interval: float = 1.0):
        host = cfg["metrics.address"]
        host = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
        self.url = f"http://{host}:{cfg['metrics.port']}/metrics"
        self.interval = interval
        self.last: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="metrics-scraper", daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                with urllib.request.urlopen(self.url, timeout=2) as answer:
                    self.last = answer.read().decode()
            except OSError:
                pass
            self._stop.wait(self.interval)

    def __enter__(self) -> "MetricsScraper":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def _check_outside_bundle(workdir: Path, app_dir: Path) -> None:
    """``flwr run`` packs the app folder minus its git-ignored paths: a workdir inside it must be ignored,
    or its logs and Flower's installed copies of the app would travel in every later bundle."""
    try:
        first = workdir.relative_to(app_dir).parts[0]
    except (ValueError, IndexError):
        return
    gitignore = app_dir / ".gitignore"
    patterns = {line.strip().strip("/") for line in gitignore.read_text().splitlines()} if gitignore.is_file() else set()
    if first not in patterns:
        raise ConfigError(f"--workdir {workdir} is inside the app folder {app_dir} but {first!r} is not in its "
                          ".gitignore, so Flower would pack it into the app bundle; use runs/... or a folder "
                          "outside the app")


def round_records(out: Path) -> list[dict]:
    """The complete lines of a run's metrics.jsonl so far (the ServerApp may be writing the next one)."""
    try:
        return read_rounds(out, complete_only=True)
    except FileNotFoundError:
        return []


def describe_round(record: dict, rounds: int) -> str:
    """One line per finished round; a lost node shows as a missing or an error reply."""
    text = (f"round {record['round']}/{rounds}: {record['replies']} valid replies from {record['nodes']} nodes, "
            f"ALMA {record.get('alma', float('nan')):.3f}, {record.get('round_seconds', 0):.0f} s")
    if record.get("missing"):
        text += f"; {record['missing']} missing (no reply within server.reply_timeout)"
    if record.get("rejected"):
        text += f"; rejected {record['rejected']} (error_reply includes nodes the SuperLink found unavailable)"
    return text


def default_timeout(cfg: Config) -> float:
    """Long enough for every round to use its whole reply timeout, plus start-up and slack."""
    return cfg["server.node_wait_timeout"] + cfg["rounds"] * (cfg["server.reply_timeout"] + 60) + 120


def run_local_federation(cfg: Config, setup: LocalSetup, timeout: float | None = None,
                         say: Callable[[str], None] = print) -> LocalResult:
    """Start the federation, run ``cfg`` once, stop every process; return how it ended."""
    started = time.monotonic()
    with LocalFederation(setup, say=say) as fed:
        cfg = fed.check_config(cfg)
        fed.start()
        run_id, cfg = fed.submit(cfg)
        result = fed.wait(run_id, cfg, timeout)
        say(f"run {run_id} {result.status} after {time.monotonic() - started:.0f} s; stopping the processes")
    return result
