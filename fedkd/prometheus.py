"""Prometheus metrics of the server's round loop, served on ``/metrics``.

:class:`ServerMetrics` is a round observer (``fedkd.observers.RoundObserver``:
``on_reject`` and ``on_round``). It keeps its metrics in a registry of its own,
so several can live in one process (tests, several simulations in a row).

:func:`serve_metrics` is what the ServerApp calls: with ``metrics.port = 0`` it
does nothing; otherwise it serves ``/metrics`` on ``metrics.address:metrics.port``
for the whole run and, after the last round, for ``metrics.linger`` more
seconds, because in a deployment the ServerApp process ends with the run and a
scraper would otherwise miss the final values.

Metric names (all prefixed ``fedkd_``) are listed in ``docs/deploy.md``.
"""
from __future__ import annotations

import logging
import math
import time
from contextlib import contextmanager
from typing import Any, Iterator, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, start_http_server
from prometheus_client.parser import text_string_to_metric_families

from fedkd.keys import setting, settings_group, shared, within
from fedkd.observers import FanOut, RoundObserver

log = logging.getLogger("fedkd.prometheus")

# A deployment round costs 7-12 s of fixed latency; a simulated one well under a second.


@settings_group("metrics")
class MetricsSettings:
    """The server's Prometheus ``/metrics`` endpoint (docs/deploy.md), and the run facts it publishes."""

    port: int = setting(0, "serve Prometheus /metrics from the server on this port (0 = off)", within(0, 65535))
    address: str = setting("127.0.0.1", "address /metrics listens on ('0.0.0.0' = every interface)",
                           ((lambda v: bool(v.strip())), "a host address"))
    linger: float = setting(0.0, "seconds /metrics stays up after the last round, so a scraper sees the final "
                            "values", within(0, 86400))
    algorithm: str = shared("algorithm")
    dataset: str = shared("dataset")
    num_clients: int = shared("num_clients")
    rounds: int = shared("rounds")


ROUND_SECONDS_BUCKETS = (0.5, 1, 2, 5, 10, 15, 20, 30, 45, 60, 90, 120, 180, 300, 600, float("inf"))


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


class ServerMetrics(RoundObserver):
    """Counters and gauges fed by the round loop's records."""

    def __init__(self, run: MetricsSettings | None = None, registry: CollectorRegistry | None = None):
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.run_info = Info("fedkd_run", "the run's algorithm, dataset and federation size", registry=r)
        self.expected_clients = Gauge("fedkd_expected_clients", "clients (partitions) the run expects",
                                      registry=r)
        self.rounds_planned = Gauge("fedkd_rounds_planned", "rounds the run is configured for", registry=r)
        self.rounds_completed = Counter("fedkd_rounds_completed", "rounds finished", registry=r)
        self.current_round = Gauge("fedkd_round", "the last finished round", registry=r)
        self.replies = Counter("fedkd_replies_received", "valid client replies", registry=r)
        self.rejected = Counter("fedkd_replies_rejected", "client replies refused, by reason", ["reason"],
                                registry=r)
        self.identity_alarms = Counter("fedkd_identity_alarms", "nodes that claimed a client id not theirs, "
                                       "by reason", ["reason"], registry=r)
        self.dropped_metrics = Counter("fedkd_metric_keys_dropped", "unknown metric keys dropped from replies",
                                       registry=r)
        self.missing = Counter("fedkd_replies_missing", "messages sent that got no reply before the timeout",
                               registry=r)
        self.bytes_up = Counter("fedkd_bytes_up", "bytes of valid replies received (clients to server)",
                                registry=r)
        self.bytes_down = Counter("fedkd_bytes_down", "bytes of train messages sent (server to clients)",
                                  registry=r)
        self.round_duration = Histogram("fedkd_round_duration_seconds", "wall time of one round",
                                        buckets=ROUND_SECONDS_BUCKETS, registry=r)
        self.alma = Gauge("fedkd_alma", "average local model accuracy (ALMA) of the last round", registry=r)
        self.alma_std = Gauge("fedkd_alma_std", "spread of the clients' local accuracies", registry=r)
        self.global_acc = Gauge("fedkd_global_accuracy", "mean global test accuracy of the last round",
                                registry=r)
        self.client_local_acc = Gauge("fedkd_client_local_accuracy", "a client's local test accuracy",
                                      ["partition"], registry=r)
        self.client_global_acc = Gauge("fedkd_client_global_accuracy", "a client's global test accuracy",
                                       ["partition"], registry=r)
        self.epsilon = Gauge("fedkd_epsilon", "privacy budget spent so far (largest over clients)", registry=r)
        self.client_epsilon = Gauge("fedkd_client_epsilon", "privacy budget a client has spent",
                                    ["partition"], registry=r)
        self.training_epsilon = Gauge("fedkd_training_epsilon", "DP-SGD: accounted epsilon of the private "
                                      "training data so far (largest over clients; delta = privacy.delta)",
                                      registry=r)
        self.client_training_epsilon = Gauge("fedkd_client_training_epsilon", "DP-SGD: a client's accounted "
                                             "epsilon of its private training data so far", ["partition"],
                                             registry=r)
        self.active_nodes = Gauge("fedkd_active_nodes", "SuperNodes the last round was sent to", registry=r)
        self.last_round_timestamp = Gauge("fedkd_last_round_timestamp_seconds",
                                          "Unix time the last round finished", registry=r)
        if run is not None:
            self.describe_run(run)

    def describe_run(self, run: MetricsSettings) -> None:
        self.run_info.info({"algorithm": str(run.algorithm), "dataset": str(run.dataset),
                            "num_clients": str(run.num_clients), "rounds": str(run.rounds)})
        self.expected_clients.set(run.num_clients)
        self.rounds_planned.set(run.rounds)

    # ------------------------------------------------------------ RoundObserver hooks

    def on_reject(self, reason: str) -> None:
        self.rejected.labels(reason=reason).inc()

    def on_round(self, record: Mapping[str, Any]) -> None:
        replies = int(record.get("replies", 0))
        nodes = int(record.get("nodes", 0))
        self.rounds_completed.inc()
        self.current_round.set(record.get("round", 0))
        self.replies.inc(replies)
        self.missing.inc(int(record.get("missing", 0)))
        for reason, count in (record.get("identity_alarms") or {}).items():
            self.identity_alarms.labels(reason=reason).inc(count)
        self.dropped_metrics.inc(sum((record.get("dropped_metric_keys") or {}).values()))
        self.active_nodes.set(nodes)
        up, down = record.get("bytes_up_per_client"), record.get("bytes_down_per_client")
        if _finite(up):
            self.bytes_up.inc(up * replies)
        if _finite(down):
            self.bytes_down.inc(down * nodes)
        if _finite(record.get("round_seconds")):
            self.round_duration.observe(record["round_seconds"])
        for gauge, key in ((self.alma, "alma"), (self.alma_std, "alma_std"), (self.global_acc, "global_acc"),
                           (self.epsilon, "epsilon"), (self.training_epsilon, "training_epsilon")):
            if _finite(record.get(key)):
                gauge.set(record[key])
        for gauge, key in ((self.client_local_acc, "per_client_local_acc"),
                           (self.client_global_acc, "per_client_global_acc"),
                           (self.client_epsilon, "epsilon_per_client"),
                           (self.client_training_epsilon, "training_epsilon_per_client")):
            for partition, value in (record.get(key) or {}).items():
                if _finite(value):
                    gauge.labels(partition=str(partition)).set(value)
        self.last_round_timestamp.set(time.time())


class MetricsServer:
    """``/metrics`` over HTTP for one registry; :meth:`close` frees the port."""

    def __init__(self, registry: CollectorRegistry, port: int, address: str = "127.0.0.1"):
        try:
            self._server, self._thread = start_http_server(port, addr=address, registry=registry)
        except OSError as exc:
            raise RuntimeError(f"cannot serve Prometheus metrics on {address}:{port} (metrics.address/"
                               f"metrics.port): {exc.strerror or exc}") from None
        self.address = address
        self.port = self._server.server_address[1]

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


@contextmanager
def serve_metrics(settings: MetricsSettings, also: Any = None) -> Iterator[Any]:
    """Yield the observer for the round loop: ``also`` (may be None) plus, when ``metrics.port`` is set,
    a :class:`ServerMetrics` served on that port until the block ends."""
    if settings.port == 0:
        yield also
        return
    metrics = ServerMetrics(settings)
    server = MetricsServer(metrics.registry, settings.port, settings.address)
    log.info("Prometheus metrics on http://%s:%d/metrics", server.address, server.port)
    try:
        yield metrics if also is None else FanOut(metrics, also)
        if settings.linger > 0:  # only after a run that ended normally: let the scraper see the final values
            time.sleep(settings.linger)
    finally:
        server.close()


def parse_metrics(text: str) -> dict[str, float]:
    """Exposition text -> ``{'name{label="v"}': value}`` (samples without labels keyed by name)."""
    samples: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            samples[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return samples
