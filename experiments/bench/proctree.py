"""Peak memory of a whole process tree (this process, Ray's GCS/raylet and every worker), sampled.

``sum RSS`` counts a shared page once per process that maps it (Ray's object store, shared libraries),
so it over-states the machine's use; ``sum PSS`` splits every shared page between its users and adds up
to what the tree really holds. Both are reported; the scale goal is judged on RSS (the stricter one),
sampled every 0.5 s; PSS is read every 10 s only, because reading it is expensive.
"""
from __future__ import annotations

import threading
import time

import psutil


def tree(root: psutil.Process) -> list[psutil.Process]:
    try:
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def tree_memory(root: psutil.Process, with_pss: bool = True) -> tuple[int, int, int]:
    """(sum RSS, sum PSS, process count) of ``root`` and its descendants right now.

    PSS needs /proc/PID/smaps_rollup, which costs about 100x more than RSS (statm): parsing it in this
    process steals CPU from the run being measured, so callers ask for it only now and then (PSS is 0
    when not asked for).
    """
    rss = pss = count = 0
    for proc in tree(root):
        try:
            rss += proc.memory_info().rss
            if with_pss:
                info = proc.memory_full_info()
                pss += getattr(info, "pss", info.rss)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
        count += 1
    return rss, pss, count


class PeakSampler:
    """Samples the tree every ``interval`` seconds in a daemon thread; use as a context manager."""

    def __init__(self, root_pid: int | None = None, interval: float = 0.5, pss_every: int = 20):
        self.root = psutil.Process(root_pid)
        self.interval = interval
        self.pss_every = pss_every
        self.peak_rss = self.peak_pss = self.peak_processes = 0
        self.samples = 0
        self.cpu_seconds: dict[int, float] = {}  # last CPU time (user + system) seen per pid
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="peak-sampler", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            rss, pss, count = tree_memory(self.root, with_pss=self.samples % self.pss_every == 0)
            self._read_cpu()
            self.peak_rss, self.peak_pss = max(self.peak_rss, rss), max(self.peak_pss, pss)
            self.peak_processes = max(self.peak_processes, count)
            self.samples += 1
            self._stop.wait(self.interval)

    def _read_cpu(self) -> None:
        for proc in tree(self.root):
            try:
                times = proc.cpu_times()
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue
            self.cpu_seconds[proc.pid] = times.user + times.system

    def __enter__(self) -> "PeakSampler":
        self._read_cpu()
        self._baseline = dict(self.cpu_seconds)  # CPU spent before the measured block (imports)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self._read_cpu()

    def as_dict(self) -> dict:
        gb = 2**30
        return {"peak_rss_gb": round(self.peak_rss / gb, 3), "peak_pss_gb": round(self.peak_pss / gb, 3),
                "peak_processes": self.peak_processes, "samples": self.samples,
                "interval_s": self.interval, "pss_interval_s": self.interval * self.pss_every,
                "sampled_at": time.strftime("%H:%M:%S"),
                **self.cpu_dict()}

    def cpu_dict(self) -> dict:
        """CPU seconds (user + system) spent during the block: by this process, and by all its descendants
        (Ray's GCS, raylet and workers). On a shared machine these move less with load than wall time."""
        used = {pid: t - getattr(self, "_baseline", {}).get(pid, 0.0) for pid, t in self.cpu_seconds.items()}
        return {"cpu_s_this_process": round(used.get(self.root.pid, 0.0), 1),
                "cpu_s_descendants": round(sum(t for pid, t in used.items() if pid != self.root.pid), 1)}
