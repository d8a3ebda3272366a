"""The simulation's client actor: Flower 1.39's ``ClientAppActor``, from a module that is cheap to import.

A Ray worker becomes an actor by importing the actor's class from its module. Flower's
``ClientAppActor`` lives in ``flwr.simulation.ray_transport.ray_actor``, and importing that module runs
``flwr.simulation``'s package ``__init__``, which imports the whole simulation engine (the link state,
the engine's loops, ``run_simulation``): about 1 CPU second per actor process, for code an actor never
runs (docs/performance.md §14). :class:`ClientActor` does what ``ClientAppActor`` does (load the
ClientApp, pass the message through it, raise Flower's own exception types, exit on ``terminate``) and
imports only Ray and Flower's ClientApp.

:func:`install` makes Flower's ``RayBackend.build`` build its pool of these actors (a lone actor listed
twice, :func:`queue_behind_a_lone_actor`), and its ``terminate`` leave the actors to end with the driver
(:func:`terminate`); everything else (the pool, the scheduling, the messages) is Flower's. Only for the
Flower version, and the sources, this was written for (``fedkd/flower_pin.py``); with another Flower,
Flower's own actor is used.
"""
from __future__ import annotations

import logging
from collections.abc import Callable

import ray
from flwr.clientapp.client_app import ClientAppException, LoadClientAppError

from fedkd.flower_pin import FLOWER_VERSION, is_pinned_flower

log = logging.getLogger("fedkd.server")

# The Flower sources ClientActor and build() repeat (a changed one is noticed, not silently diverged from).
FLOWER_SOURCES_SHA256 = {
    "VirtualClientEngineActor.run": "a87502a00b99224d9733ec81e909efa1c07c616242b47c692d366015393ad194",
    "VirtualClientEngineActor.terminate": "540a8c35350efd903b2d53a64c1ae108a4b500410b2ef3248e02fe02e53debfe",
    "ClientAppActor.__init__": "b672b1b5edd605898540695897e6ef15d85be3e15f5b9c9908fe04be4a1ff4ef",
    "RayBackend.build": "6a0c387457a6dbc1b35091762c24afdd2c3453fe09eeceeb7e966136f832ddc0",
    "RayBackend.terminate": "572052de11fe046c057296609a80a242237f476ca547d6bd10fcb186e5c221c4",
}


@ray.remote
class ClientActor:
    """Runs one message at a time through the ClientApp that ``client_app_fn`` loads, as Flower's actor does."""

    def __init__(self, on_actor_init_fn: Callable[[], None] | None = None) -> None:
        if on_actor_init_fn:
            on_actor_init_fn()

    def run(self, client_app_fn: Callable, message, cid: str, context) -> tuple:
        try:
            app = client_app_fn()
            out_message = app(message=message, context=context)
        except LoadClientAppError:
            raise
        except Exception as ex:  # Flower's engine turns this type into an error reply for the server
            raise ClientAppException(str(ex)) from ex
        return cid, out_message, context

    def terminate(self) -> None:
        ray.actor.exit_actor()


def _flower_functions() -> dict[str, Callable]:
    from flwr.server.superlink.fleet.vce.backend.raybackend import RayBackend
    from flwr.simulation.ray_transport.ray_actor import ClientAppActor, VirtualClientEngineActor

    return {"VirtualClientEngineActor.run": VirtualClientEngineActor.run,
            "VirtualClientEngineActor.terminate": VirtualClientEngineActor.terminate,
            "ClientAppActor.__init__": ClientAppActor.__ray_actor_class__.__init__,
            "RayBackend.build": _ORIGINAL.get("RayBackend.build", RayBackend.build),
            "RayBackend.terminate": _ORIGINAL.get("RayBackend.terminate", RayBackend.terminate)}


def matches_installed_flower() -> bool:
    """Whether the installed Flower is the version, with the sources, :class:`ClientActor` repeats."""
    return is_pinned_flower(_flower_functions(), FLOWER_SOURCES_SHA256)


def actor_type() -> type:
    """The actor class simulations build their pools of: ours once installed, else Flower's."""
    if "RayBackend.build" in _ORIGINAL:
        return ClientActor
    from flwr.simulation.ray_transport.ray_actor import ClientAppActor

    return ClientAppActor


def build(self, app_fn: Callable, kept_actors: list | tuple = ()) -> None:
    """Flower 1.39's ``RayBackend.build`` with :func:`actor_type` as the pool's actor type.

    kept_actors: idle actors of an earlier simulation (``server.simulate.one_ray_instance``); they fill
    the pool first, and new ones are started only for what is missing.
    """
    from flwr.simulation.ray_transport.ray_actor import BasicActorPool

    kind = actor_type()
    self.pool = BasicActorPool(actor_type=kind, client_resources=self.client_resources,
                               actor_kwargs=self.actor_kwargs)
    self.pool.pool, self.pool.num_actors = list(kept_actors), len(kept_actors)
    if self.pool.actors_capacity > len(kept_actors):
        self.pool.add_actors_to_pool(self.pool.actors_capacity - len(kept_actors))
    if kind is ClientActor:
        queue_behind_a_lone_actor(self.pool)
    self.app_fn = app_fn


def queue_behind_a_lone_actor(pool) -> None:
    """List a pool's only actor ``TASKS_PER_LONE_ACTOR`` times, so that as many engine threads send it work.

    Flower's engine runs one thread per entry of the pool, and each thread waits for its message's reply
    before it takes the next one: with one entry per actor, the actor sits idle while its reply travels
    back and the next message travels to it (~3.5 ms a message on the 2-core machine). With two entries,
    Ray queues the next message behind the running one and the actor goes straight on; it still runs one
    message at a time, and nothing a message computes depends on when it runs (a node's state travels in
    its message's context). Only for a lone actor: with several, a message queued behind a slow client
    waits although another actor may be free; on label-skewed partitions (Dirichlet 0.1, where clients'
    training times differ most) rounds were slower with queueing than without (docs/performance.md §14).
    """
    actors = list(dict.fromkeys(pool.pool))  # each actor once, in the pool's order
    pool.pool = actors * (TASKS_PER_LONE_ACTOR if len(actors) == 1 else 1)
    pool.num_actors = len(pool.pool)


TASKS_PER_LONE_ACTOR = 2


def terminate(self) -> None:
    """Flower 1.39's ``RayBackend.terminate`` without asking each actor to exit first.

    The actors are owned by this driver and end with it (``ray.shutdown`` stops a private node's
    processes; on a cluster, Ray ends a departing driver's actors). Asking each to exit first only made
    ``ray.shutdown`` wait for their answers: ~0.25 s per run on the 2-core machine.
    """
    ray.shutdown()


_ORIGINAL: dict = {}


def install() -> bool:
    """Make this process's simulations use :class:`ClientActor` (idempotent). Returns whether they do."""
    from flwr.server.superlink.fleet.vce.backend.raybackend import RayBackend

    if "RayBackend.build" in _ORIGINAL:  # installed (and perhaps wrapped since by server.simulate.one_ray_instance)
        return True
    if not matches_installed_flower():
        log.warning("Flower's client actor is not the one server/client_actor.py was written for (Flower %s): "
                    "using Flower's own, which imports Flower's whole simulation engine in every actor",
                    FLOWER_VERSION)
        return False
    _ORIGINAL["RayBackend.build"], _ORIGINAL["RayBackend.terminate"] = RayBackend.build, RayBackend.terminate
    RayBackend.build, RayBackend.terminate = build, terminate
    return True
