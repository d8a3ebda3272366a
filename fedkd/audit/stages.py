"""Bookkeeping of an audit: timed stages, progress messages (``logging``), progress bars."""
from __future__ import annotations

import contextlib
import logging
import time

log = logging.getLogger("fedkd.audit")


class Clock:
    """Wall-clock and CPU seconds of named stages (CPU: this process, all threads)."""

    def __init__(self):
        self.stages: dict[str, dict[str, float]] = {}

    @contextlib.contextmanager
    def stage(self, name: str):
        wall, cpu = time.perf_counter(), time.process_time()
        try:
            yield
        finally:
            self.stages[name] = {"wall_seconds": time.perf_counter() - wall,
                                 "cpu_seconds": time.process_time() - cpu}

    def total(self) -> dict[str, float]:
        return {k: float(sum(s[k] for s in self.stages.values())) for k in ("wall_seconds", "cpu_seconds")}


def progress_log(message: str) -> None:
    """A progress message of the audit (``fedkd audit`` shows INFO messages of ``fedkd.audit``)."""
    log.info(message)
