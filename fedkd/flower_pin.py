"""The Flower version fedkd's run-time replacements of Flower code were written for, and their check.

Four modules change a piece of Flower 1.39.0 while a process runs (docs/architecture.md, "Where fedkd
changes Flower's own code"): ``server/handout.py``, ``server/client_actor.py``, ``fedkd/deploy/supernode.py``
and ``fedkd/deploy/warm_clientapp.py``. Each touches Flower only when the installed Flower is this version
*and* the functions it relies on still have the sources it was written against (their sha256), so that a
patch release that changes them is noticed rather than silently mis-patched.
"""
from __future__ import annotations

import hashlib
import inspect
from collections.abc import Callable, Mapping

FLOWER_VERSION = "1.39.0"


def sources_sha256(functions: Mapping[str, Callable]) -> dict[str, str]:
    """sha256 of ``inspect.getsource`` of each named function."""
    return {name: hashlib.sha256(inspect.getsource(f).encode()).hexdigest() for name, f in functions.items()}


def is_pinned_flower(functions: Mapping[str, Callable], expected_sha256: Mapping[str, str]) -> bool:
    """Whether the installed Flower is :data:`FLOWER_VERSION` and ``functions`` have the expected sources."""
    import flwr

    return flwr.__version__ == FLOWER_VERSION and sources_sha256(functions) == dict(expected_sha256)
