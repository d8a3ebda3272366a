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
"""
from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

log = logging.getLogger("fedkd.server")

RAY_VERSION = "2.55.1"  # the version flwr[simulation] 1.39 pins; the Node methods below are that version's

# Ray's Node methods that start a service of a shared cluster (ray/_private/node.py)
CLUSTER_SERVICES = ("start_monitor", "start_api_server")
LOG_MONITOR = "start_log_monitor"


def _start_nothing(self, *args, **kwargs) -> None:
    """Stands in for a Node method that would start a service this node does without."""


@contextmanager
def lean_head_node(keep_log_monitor: bool) -> Iterator[bool]:
    """While inside, a head node that ``ray.init`` starts has no monitor, no API server, and no log
    monitor unless ``keep_log_monitor``. Yields whether the services are left out."""
    import ray
    from ray._private.node import Node

    if ray.__version__ != RAY_VERSION:
        log.warning("Ray %s is not the version server/lean_ray.py was written for (%s): starting Ray's "
                    "monitor, log monitor and API server as usual", ray.__version__, RAY_VERSION)
        yield False
        return
    skipped = CLUSTER_SERVICES if keep_log_monitor else (*CLUSTER_SERVICES, LOG_MONITOR)
    originals = {name: Node.__dict__[name] for name in skipped}
    for name in skipped:
        setattr(Node, name, _start_nothing)
    try:
        yield True
    finally:
        for name, method in originals.items():
            setattr(Node, name, method)
