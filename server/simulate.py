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
from contextlib import contextmanager
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


# A message's arguments and reply up to this size travel inside Ray's task call instead of through the object
# store (Ray's default: 100 KiB). A client's message carries its node state (its model, 40-200 KB for digits):
# through the object store each message paid ~1.7 ms more on the 2-core machine (docs/performance.md §14).
INLINE_OBJECT_BYTES = 2**20


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


def start_local_ray(cfg: Config, verbose: bool = False) -> None:
    """Start this process's private Ray instance as Flower would, but without a job ``runtime_env``.

    Flower 1.39 hands the driver's ``sys.path`` to the workers as the job's ``runtime_env``. Ray then
    cannot use the workers it starts with the node (they have no runtime env) and starts two more
    through its runtime-env agent, each importing Ray again: on the 2-core machine about 1.5 CPU
    seconds, before the first client actor exists. A local instance's workers inherit this process's
    environment, so the same PYTHONPATH set here reaches them. The node starts without the services
    of a shared cluster (``server/lean_ray.py``). Nothing is done when Ray is already up or when the
    run attaches to a cluster (a remote node does not inherit our environment: Flower's runtime_env
    stays).
    """
    import sys

    import ray

    from server.lean_ray import lean_head_node

    if ray.is_initialized() or ray_address(cfg):
        return
    path = os.pathsep.join([*sys.path, *filter(None, [os.environ.get("PYTHONPATH")])])
    os.environ["PYTHONPATH"] = path
    with lean_head_node(keep_log_monitor=verbose):  # no cluster services (server/lean_ray.py)
        ray.init(**{"include_dashboard": False, **backend_config(cfg, verbose)["init_args"]},
                 _system_config={"max_direct_call_object_size": INLINE_OBJECT_BYTES})


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
    from server import client_actor, handout
    from server.app import make_server_app

    handout.install()  # one pass over stored messages per 0.1 s tick instead of nodes x messages (server/handout.py)
    client_actor.install()  # actors that do not import Flower's whole simulation engine (server/client_actor.py)

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
    start_local_ray(cfg, verbose)  # Flower's RayBackend shuts it down at the end, as one it started
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        run_simulation(server_app=make_server_app(cfg, result, progress=progress, observer=observer),
                       client_app=client_app, num_supernodes=cfg.run.num_clients,
                       backend_config=backend_config(cfg, verbose), verbose_logging=verbose)
    if "summary" not in result:
        raise RuntimeError(f"the simulation ended without a summary; see the log above and {out_dir}")
    return result["summary"]


@contextmanager
def one_ray_instance():
    """Run several simulations of this process on one Ray instance and one set of client actors
    (``fedkd compare``, sweeps).

    Flower 1.39 starts Ray for a simulation only when none is running, but shuts it down at the end of
    every simulation (``RayBackend.terminate``), and every simulation builds a new pool of client actors,
    each a fresh process that imports torch again (seconds per run). Inside this context a simulation's end
    keeps Ray and its idle actors, and the next simulation that asks for the same actor resources takes
    those actors instead of starting new ones; Ray is shut down when the context ends. Results do not
    change: an actor holds no state of a run (each message brings its ClientApp and its node's context;
    what the actor process caches, datasets and a node's inputs, is keyed by the config that made it;
    ``tests/test_compare_reuse.py`` compares with separate runs). The first simulation starts Ray with its
    own settings (the runs of one sweep share them). With a Flower other than the one server/handout.py was
    written for, nothing is changed.
    """
    import flwr

    from server import handout

    if flwr.__version__ != handout.FLOWER_VERSION:
        yield
        return
    import ray
    from flwr.server.superlink.fleet.vce.backend.raybackend import RayBackend

    from server import client_actor

    client_actor.install()  # before Flower's build is kept below: the kept one builds fedkd's actors
    original_build, original_terminate = RayBackend.build, RayBackend.terminate
    was_running = ray.is_initialized()
    idle: dict[str, list] = {}  # actor resources -> the idle actors the last simulation left

    def resources_key(backend) -> str:
        return repr((sorted(backend.client_resources.items()), sorted((backend.actor_kwargs or {}).items())))

    def kill_idle_actors() -> None:
        for actors in idle.values():
            for actor in actors:
                ray.kill(actor)
        idle.clear()

    def build_on_kept_actors(self, app_fn) -> None:
        actors = idle.pop(resources_key(self), [])
        kill_idle_actors()  # another resource shape's: they would hold the CPUs this run's actors need
        client_actor.build(self, app_fn, kept_actors=actors)  # Flower's build, the kept actors first

    def keep_idle_actors(self) -> None:
        if not self.pool:
            return
        busy = list(dict.fromkeys(self.pool._future_to_actor.values()))
        for actor in busy:
            ray.kill(actor)  # still busy (a failed run): not reusable
        kill_idle_actors()
        idle[resources_key(self)] = [a for a in dict.fromkeys(self.pool.pool) if a not in busy]  # each actor once

    RayBackend.build, RayBackend.terminate = build_on_kept_actors, keep_idle_actors
    try:
        yield
    finally:
        RayBackend.build, RayBackend.terminate = original_build, original_terminate
        kill_idle_actors()
        if ray.is_initialized() and not was_running:
            ray.shutdown()
