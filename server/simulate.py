"""Run one experiment through Flower's simulation engine (Ray) in this process.

Ray is started here with the CPUs and memory the config allows, or, with
``sim.ray_address`` (or ``RAY_ADDRESS`` in the environment), attached to a Ray
cluster that is already running: Ray refuses resource arguments when it connects
to a cluster (the cluster's own ``ray start`` settings decide them), so none are
passed then.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

from fedkd.config import Config
from fedkd.observers import RoundObserver

# No telemetry, no update checks, no dependency installs: nothing may reach the network.
for _var, _value in (("FLWR_TELEMETRY_ENABLED", "0"), ("FLWR_DISABLE_UPDATE_CHECK", "1"),
                     ("FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION", "1"), ("RAY_USAGE_STATS_ENABLED", "0"),
                     ("RAY_DEDUP_LOGS", "0"),
                     ("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")):
    os.environ.setdefault(_var, _value)


# Messages stored at once per client actor: enough queued work that no actor waits for the engine's
# 0.1 s hand-out pass, few enough that the pass stays cheap at thousands of clients.
IN_FLIGHT_PER_ACTOR = 16


def ray_address(cfg: Config) -> str:
    """The Ray cluster to attach to ('' = start a private Ray instance here)."""
    return cfg.sim.ray_address or os.environ.get("RAY_ADDRESS", "")


def backend_config(cfg: Config, verbose: bool = False) -> dict:
    """Flower's backend config: client resources, and how Ray is started or attached."""
    sim = cfg.sim
    init_args: dict = {"logging_level": "ERROR" if not verbose else "INFO", "log_to_driver": verbose}
    address = ray_address(cfg)
    if address:
        init_args["address"] = address  # resources belong to the cluster: Ray refuses num_cpus and the like here
    else:
        init_args.update(num_cpus=sim.num_cpus or os.cpu_count() or 1, include_dashboard=False)
        if sim.object_store_mb:
            init_args["object_store_memory"] = sim.object_store_mb * 2**20
    return {"client_resources": {"num_cpus": sim.client_cpus, "num_gpus": sim.client_gpus},
            "init_args": init_args}


def simulate(cfg: Config, out_dir: str, progress: bool = True, verbose: bool = False, *,
             client_app=None, observer: RoundObserver | None = None) -> dict:
    """Simulate the run's ``num_clients`` SuperNodes on Ray and return the run summary.

    client_app: the ClientApp to run (default: fedkd's, with each node's state under
    ``<out_dir>/nodes/``); fault-injection harnesses pass a wrapped one. observer: extra
    round observer (``fedkd.observers``).
    """
    import warnings

    from flwr.simulation import run_simulation

    from clients.app import make_client_app
    from clients.node import RunFolderStorage
    from server import handout
    from server.app import make_server_app

    handout.install()  # one pass over stored messages per 0.1 s tick instead of nodes x messages (server/handout.py)

    if not verbose:
        logging.getLogger("flwr").setLevel(logging.ERROR)
    from server.public import simulation_data

    result: dict = {}
    cfg = simulation_data(cfg).replace(out=str(out_dir))  # a run on folders is checked before Ray starts
    if cfg.server.max_in_flight == -1:  # auto: a window per client actor (why: server/dispatch.py)
        actors = max(1, int((cfg.sim.num_cpus or os.cpu_count() or 1) // cfg.sim.client_cpus))
        cfg = cfg.replace(server__max_in_flight=IN_FLIGHT_PER_ACTOR * actors)
    if client_app is None:
        client_app = make_client_app(storage=RunFolderStorage(Path(out_dir).resolve() / "nodes"), simulated=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        run_simulation(server_app=make_server_app(cfg, result, progress=progress, observer=observer),
                       client_app=client_app, num_supernodes=cfg.run.num_clients,
                       backend_config=backend_config(cfg, verbose), verbose_logging=verbose)
    if "summary" not in result:
        raise RuntimeError(f"the simulation ended without a summary; see the log above and {out_dir}")
    return result["summary"]
