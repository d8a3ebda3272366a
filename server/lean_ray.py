"""A private Ray instance for a simulation on one machine, without the services of a shared cluster.

``ray.init`` with no cluster to attach to starts a head node: the GCS, the raylet (which starts its
dashboard and runtime-env agents), and three Python services that a private simulation never uses:

- the autoscaler **monitor**: a fixed local node has nothing to scale;
- the dashboard's **API server** (Jobs and state API): ``include_dashboard=False`` still starts it,
  and ``ray.init`` waits until it has published its address;
- the **log monitor**, which streams the workers' output to the driver: needed only with
  ``log_to_driver`` (``--verbose``).

On the 2-core machine these three take about 4 CPU seconds while a run starts, ``ray.init`` waits about
0.8 s for the API server and ``ray.shutdown`` about 1 s for the monitor, which does not exit on SIGTERM
(docs/performance.md §14). Ray 2.55 has no ``ray.init`` argument for them (``ray start`` has
``--include-log-monitor`` and a hidden ``--no-monitor``), so :func:`lean_head_node` makes Ray's own
``Node`` skip them while ``ray.init`` starts the node; everything else is Ray's. Only for the Ray
version it was written for: with another, ``ray.init`` starts everything as usual (with a warning).

While inside, ``ray.init`` also learns sooner that its raylet is up. ``Node`` asks the GCS for its own
node in one call that polls on a whole-second timer; the raylet registers about 1 s after it starts (once
its agents have bound their ports), so that call returned after 1, 2 or 3 s, as the registration fell
just before or after one of its polls. :func:`_get_node_once_registered` watches the GCS's node table
every 50 ms first and calls Ray's own ``get_node`` once the node is listed (docs/performance.md §15).
"""
from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager

log = logging.getLogger("fedkd.server")

RAY_VERSION = "2.55.1"  # the version flwr[simulation] 1.39 pins; the Node methods below are that version's

# Ray's Node methods that start a service of a shared cluster (ray/_private/node.py)
CLUSTER_SERVICES = ("start_monitor", "start_api_server")
LOG_MONITOR = "start_log_monitor"


# How often, and for how long at most, to look for the node in the GCS's node table before handing over
# to Ray's own get_node (which then answers at once, or fails as Ray's would)
NODE_POLL_S, NODE_WAIT_S = 0.05, 30.0


def _start_nothing(self, *args, **kwargs) -> None:
    """Stands in for a Node method that would start a service this node does without."""


def _get_node_once_registered(ray_get_node):
    """Ray's ``services.get_node``, called once the GCS lists ``node_id`` (or after NODE_WAIT_S)."""
    from ray._raylet import GcsClient

    def get_node(gcs_address: str, node_id: str) -> dict:
        deadline = time.monotonic() + NODE_WAIT_S
        try:
            client = GcsClient(address=gcs_address)
            while time.monotonic() < deadline:
                if any(listed.hex() == node_id for listed in client.get_all_node_info(timeout=NODE_WAIT_S)):
                    break
                time.sleep(NODE_POLL_S)
        except Exception as error:  # Ray's own call below reports what is wrong with the GCS
            log.debug("watching the GCS's node table failed (%s); leaving it to Ray", error)
        return ray_get_node(gcs_address, node_id)

    return get_node


@contextmanager
def lean_head_node(keep_log_monitor: bool) -> Iterator[bool]:
    """While inside, a head node that ``ray.init`` starts has no monitor, no API server, and no log
    monitor unless ``keep_log_monitor``, and ``ray.init`` returns soon after its raylet has registered.
    Yields whether the services are left out."""
    import ray
    from ray._private import services
    from ray._private.node import Node

    if ray.__version__ != RAY_VERSION:
        log.warning("Ray %s is not the version server/lean_ray.py was written for (%s): starting Ray's "
                    "monitor, log monitor and API server as usual", ray.__version__, RAY_VERSION)
        yield False
        return
    skipped = CLUSTER_SERVICES if keep_log_monitor else (*CLUSTER_SERVICES, LOG_MONITOR)
    originals = {name: Node.__dict__[name] for name in skipped}
    ray_get_node = services.get_node
    for name in skipped:
        setattr(Node, name, _start_nothing)
    services.get_node = _get_node_once_registered(ray_get_node)
    try:
        yield True
    finally:
        for name, method in originals.items():
            setattr(Node, name, method)
        services.get_node = ray_get_node
