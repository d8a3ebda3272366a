"""Run one experiment through Flower's simulation engine (Ray) in this process."""
from __future__ import annotations

import logging
import os

from fedkd.config import Config

# No telemetry, no update checks, no dependency installs: nothing may reach the network.
for _var, _value in (("FLWR_TELEMETRY_ENABLED", "0"), ("FLWR_DISABLE_UPDATE_CHECK", "1"),
                     ("FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION", "1"), ("RAY_USAGE_STATS_ENABLED", "0"),
                     ("RAY_DEDUP_LOGS", "0"),
                     ("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")):
    os.environ.setdefault(_var, _value)


# Messages stored at once per client actor: enough queued work that no actor waits for the engine's
# 0.1 s hand-out pass, few enough that the pass stays cheap at thousands of clients.
IN_FLIGHT_PER_ACTOR = 16


def simulate(cfg: Config, out_dir: str, progress: bool = True, verbose: bool = False) -> dict:
    """Simulate ``cfg['num_clients']`` SuperNodes on Ray and return the run summary."""
    import warnings

    from flwr.simulation import run_simulation

    from clients.app import app as client_app
    from server.app import make_server_app

    if not verbose:
        logging.getLogger("flwr").setLevel(logging.ERROR)
    result: dict = {}
    cfg = cfg.replace(out=str(out_dir))
    if cfg["server.max_in_flight"] == -1:  # auto: a window per client actor (why: server/dispatch.py)
        actors = max(1, int((cfg["sim.num_cpus"] or os.cpu_count() or 1) // cfg["sim.client_cpus"]))
        cfg = cfg.replace(server__max_in_flight=IN_FLIGHT_PER_ACTOR * actors)
    backend = {
        "client_resources": {"num_cpus": cfg["sim.client_cpus"], "num_gpus": cfg["sim.client_gpus"]},
        "init_args": {"num_cpus": cfg["sim.num_cpus"] or os.cpu_count() or 1, "include_dashboard": False,
                      "logging_level": "ERROR" if not verbose else "INFO",
                      "log_to_driver": verbose},
    }
    if cfg["sim.object_store_mb"]:
        backend["init_args"]["object_store_memory"] = cfg["sim.object_store_mb"] * 2**20
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        run_simulation(server_app=make_server_app(cfg, result, progress=progress), client_app=client_app,
                       num_supernodes=cfg["num_clients"], backend_config=backend, verbose_logging=verbose)
    if "summary" not in result:
        raise RuntimeError(f"the simulation ended without a summary; see the log above and {out_dir}")
    return result["summary"]
