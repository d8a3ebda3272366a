"""The server's Prometheus exporter: real prometheus-client registries, a real HTTP /metrics, scraped."""
import socket
import urllib.request

import pytest

from fedkd.config import ConfigError, make_config
from fedkd.deploy.processes import free_port
from fedkd.observers import FanOut
from fedkd.prometheus import MetricsServer, ServerMetrics, parse_metrics, serve_metrics

ROUND_1 = {"round": 1, "replies": 2, "missing": 1, "nodes": 3, "rejected": {"wrong_round": 1},
           "alma": 0.5, "alma_std": 0.1, "global_acc": 0.4, "bytes_up_per_client": 4000.0,
           "bytes_down_per_client": 1000.0, "round_seconds": 12.0, "epsilon": 1.5,
           "per_client_local_acc": {"0": 0.4, "1": 0.6}, "per_client_global_acc": {"0": 0.3, "1": 0.5},
           "epsilon_per_client": {"0": 1.5, "1": 1.2}}
ROUND_2 = {"round": 2, "replies": 3, "missing": 0, "nodes": 3, "rejected": {},
           "alma": 0.7, "alma_std": 0.05, "global_acc": 0.6, "bytes_up_per_client": 4000.0,
           "bytes_down_per_client": 5000.0, "round_seconds": 25.0,
           "per_client_local_acc": {"0": 0.6, "1": 0.8, "2": 0.7}, "per_client_global_acc": {}}


def scrape(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
        return parse_metrics(answer.read().decode())


def feed(metrics: ServerMetrics) -> None:
    metrics.on_reject("wrong_round")
    metrics.on_round(ROUND_1)
    metrics.on_round(ROUND_2)


def test_metrics_served_over_http_follow_the_round_records():
    cfg = make_config({"num_clients": 3, "rounds": 2, "algorithm": "fedmd"})
    metrics = ServerMetrics(cfg.metrics)
    server = MetricsServer(metrics.registry, free_port())
    try:
        feed(metrics)
        m = scrape(server.port)
    finally:
        server.close()
    assert m['fedkd_run_info{algorithm="fedmd",dataset="digits",num_clients="3",rounds="2"}'] == 1
    assert m["fedkd_expected_clients"] == 3 and m["fedkd_rounds_planned"] == 2
    assert m["fedkd_rounds_completed_total"] == 2 and m["fedkd_round"] == 2
    assert m["fedkd_replies_received_total"] == 5
    assert m["fedkd_replies_missing_total"] == 1
    assert m['fedkd_replies_rejected_total{reason="wrong_round"}'] == 1
    assert m["fedkd_bytes_up_total"] == 4000 * 2 + 4000 * 3  # per-client mean x valid replies
    assert m["fedkd_bytes_down_total"] == 1000 * 3 + 5000 * 3  # per-client mean x nodes sent to
    assert m["fedkd_round_duration_seconds_count"] == 2 and m["fedkd_round_duration_seconds_sum"] == 37
    assert m['fedkd_round_duration_seconds_bucket{le="15.0"}'] == 1
    assert m["fedkd_alma"] == 0.7 and m["fedkd_global_accuracy"] == 0.6 and m["fedkd_alma_std"] == 0.05
    assert m['fedkd_client_local_accuracy{partition="2"}'] == 0.7
    assert m['fedkd_client_global_accuracy{partition="1"}'] == 0.5  # kept from round 1
    assert m["fedkd_epsilon"] == 1.5 and m['fedkd_client_epsilon{partition="1"}'] == 1.2
    assert m["fedkd_active_nodes"] == 3
    assert m["fedkd_last_round_timestamp_seconds"] > 1.6e9


def test_a_round_without_replies_leaves_accuracy_gauges_alone():
    metrics = ServerMetrics()
    metrics.on_round(ROUND_2)
    metrics.on_round({"round": 3, "replies": 0, "missing": 3, "nodes": 3, "rejected": {},
                      "alma": float("nan"), "global_acc": float("nan"), "bytes_up_per_client": float("nan"),
                      "bytes_down_per_client": 900.0, "round_seconds": 40.0})
    from prometheus_client import generate_latest

    m = parse_metrics(generate_latest(metrics.registry).decode())
    assert m["fedkd_alma"] == 0.7  # the last real value, not NaN
    assert m["fedkd_bytes_up_total"] == 4000 * 3
    assert m["fedkd_replies_missing_total"] == 3
    assert m["fedkd_active_nodes"] == 3 and m["fedkd_rounds_completed_total"] == 2


def test_private_registries_do_not_collide():
    first, second = ServerMetrics(), ServerMetrics()
    first.on_round(ROUND_1)
    from prometheus_client import generate_latest

    assert parse_metrics(generate_latest(second.registry).decode())["fedkd_rounds_completed_total"] == 0


def test_serve_metrics_is_off_at_port_zero_and_frees_its_port():
    sentinel = ServerMetrics()
    with serve_metrics(make_config({}).metrics, also=sentinel) as observer:
        assert observer is sentinel  # nothing served

    port = free_port()
    cfg = make_config({"metrics.port": port, "rounds": 2})
    with serve_metrics(cfg.metrics, also=sentinel) as observer:
        assert isinstance(observer, FanOut)
        observer.on_round(ROUND_1)
        assert scrape(port)["fedkd_rounds_completed_total"] == 1
    assert sentinel_rounds(sentinel) == 1  # the extra observer saw the round too
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()


def sentinel_rounds(metrics: ServerMetrics) -> float:
    from prometheus_client import generate_latest

    return parse_metrics(generate_latest(metrics.registry).decode())["fedkd_rounds_completed_total"]


def test_a_taken_port_is_refused_with_the_key_named():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(RuntimeError, match=f"127.0.0.1:{port}.*metrics.port"):
            with serve_metrics(make_config({"metrics.port": port}).metrics):
                pass


@pytest.mark.parametrize("key, value", [("metrics.port", 70000), ("metrics.port", -1), ("metrics.linger", -2.0),
                                        ("metrics.address", " ")])
def test_bad_metrics_keys_are_refused(key, value):
    with pytest.raises(ConfigError, match=key):
        make_config({key: value})
