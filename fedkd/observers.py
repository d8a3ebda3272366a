"""Watching a run from outside the round loop: Prometheus, progress, fault-injection harnesses.

The loop calls ``on_reject(reason)`` for every refused reply and ``on_round(record)``
after each round's record and checkpoint are written. An observer that raises
:class:`StopRun` ends the run there, cleanly: the round is recorded and
checkpointed, so ``--resume`` continues from it.
"""
from __future__ import annotations

from typing import Any, Mapping


class StopRun(Exception):
    """Raised by an observer to end the run after the current round."""


class RoundObserver:
    """The default observer does nothing."""

    def on_reject(self, reason: str) -> None: ...

    def on_round(self, record: Mapping[str, Any]) -> None: ...


class FanOut(RoundObserver):
    """Pass each event to several observers."""

    def __init__(self, *observers: Any):
        self.observers = [o for o in observers if o is not None]

    def on_reject(self, reason: str) -> None:
        for observer in self.observers:
            observer.on_reject(reason)

    def on_round(self, record: Mapping[str, Any]) -> None:
        for observer in self.observers:
            observer.on_round(record)
