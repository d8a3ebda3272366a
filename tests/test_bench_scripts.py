"""Every benchmark in experiments/bench runs end to end at tiny sizes and closes with its JSON line.

These check what the scripts report, never how fast anything was (docs/performance.md has the timings):
the bare loop of round_overhead reproduces the simulation's accuracies, the byte counts of bytes.py
match the wire format's payload, scale.py sees every reply and a memory sample, and so on.
"""
import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "experiments" / "bench"
TINY = ["--set", "transfer_size=50", "--set", "local_test_size=20", "--set", "global_test_size=50",
        "--set", "revisit_epochs=1", "--set", "digest_epochs=1"]


def run_bench(name: str, *args: str, timeout: int = 600) -> dict:
    """Run one benchmark script as a user would; return its closing JSON object."""
    proc = subprocess.run([sys.executable, str(BENCH / f"{name}.py"), *args], capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    last = proc.stdout.strip().splitlines()[-1]
    record = json.loads(last)
    assert record["bench"] == name and "goal" in record and "machine" in record
    return record


def test_fusion_bench_reports_every_rule_and_size():
    record = run_bench("fusion", "--sizes", "5,20", "--transfer", "50", "--repeats", "1")
    assert [row["N"] for row in record["rows"]] == [5, 20]
    for row in record["rows"]:
        for alg in ("local", "fedmd", "dsfl", "knfu"):
            assert row[f"{alg}_s"] > 0 and row[f"{alg}_peak_bytes_per_entry"] > 0
    assert record["ratio"] == pytest.approx(record["rows"][-1]["knfu_ratio"], rel=1e-3)


@pytest.mark.slow
def test_round_overhead_bare_loop_does_the_simulations_work():
    record = run_bench("round_overhead", "--repeats", "1", "--set", "num_clients=3", "--set", "rounds=3", *TINY)
    assert record["identical_accuracies"] is True  # client_step + the rule's fusion = the simulated rounds
    assert record["ratio"] > 0 and len(record["flower_rounds"][0]) == len(record["bare_rounds"][0]) == 3


def test_round_overhead_refuses_what_the_bare_loop_does_not_model():
    proc = subprocess.run([sys.executable, str(BENCH / "round_overhead.py"), "--set", "algorithm=fedavg",
                           "--set", "models=cnn_small"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "soft-label algorithms" in proc.stderr


@pytest.mark.slow
def test_bytes_bench_counts_what_the_wire_format_sends():
    # a pool of 2 peers: min_contributors=1 so that every client gets targets and sends the full payload back
    record = run_bench("bytes", "--seeds", "0", "--rounds", "2", "--formats", "float32,uint8:1",
                       "--set", "num_clients=3", "--set", "server.min_contributors=1", *TINY)
    f32, top1, fedavg = record["formats"]["float32"], record["formats"]["uint8:1"], record["fedavg"]
    m, c = record["transfer_size"], record["classes"]
    assert f32["payload_bytes_per_client_round"] == 2 * m * c * 4
    assert top1["payload_bytes_per_client_round"] < f32["payload_bytes_per_client_round"] / 10
    # whole messages: the payload plus framing, metrics and the run config
    assert f32["bytes_per_client_round"] >= f32["payload_bytes_per_client_round"]
    assert fedavg["bytes_per_client_round"] >= 2 * 4 * record["cnn_small_parameters"]
    assert top1["fewer_bytes_than_fedavg"] > f32["fewer_bytes_than_fedavg"] > 1
    assert 0 <= record["local_only"]["alma"] <= 1


@pytest.mark.slow
def test_scale_bench_sees_every_reply_and_the_process_tree():
    record = run_bench("scale", "--clients", "12", "--rounds", "2")
    [row] = record["rows"]
    assert record["replies_last_round"] == 12 and record["rounds_run"] == 2 and row["replies"] == [12, 12]
    assert row["peak_processes"] > 1  # Ray's processes are counted with the driver
    assert 0 < record["peak_rss_gb"] < 24 and record["round_time_growth"] is None


@pytest.mark.slow
def test_scale_bench_curve_samples_the_same_clients_at_every_size():
    record = run_bench("scale", "--clients", "8,24", "--per-round", "4", "--rounds", "2")
    small, large = record["rows"]
    assert (small["clients"], large["clients"]) == (8, 24) and record["registered_growth"] == 3
    for row in (small, large):
        assert row["sampled_per_round"] == [4, 4] and row["replies"] == [4, 4]
    # the round record holds the sampled clients only: it does not grow 3x with the registered ones
    assert record["record_growth"] < 1.5 and record["round_time_growth"] > 0


def test_gpu_bench_runs_its_cpu_half_without_cuda():
    record = run_bench("gpu", "--workers", "1", "--clients", "2", "--rounds", "1", *TINY)
    cpu_rows = [row for row in record["rows"] if row["device"] == "cpu"]
    assert cpu_rows and cpu_rows[0]["client_rounds"] == 2
    if not record["cuda"]:
        assert record["ratio"] is None


def test_checkpoint_cost_bench_restores_every_round():
    record = run_bench("checkpoint_cost", "--clients", "20", "--rounds", "3")
    assert record["records_restored"] == 3 and len(record["seconds_by_round"]) == 3
    assert record["targets_restored"] == 20  # the strategy's own state_dict, read back by load_state_dict


def test_profile_client_bench_times_the_handler_around_client_step():
    record = run_bench("profile_client", "--clients", "2", "--rounds", "1", *TINY)
    assert record["client_rounds"] == 2 and 0 < record["client_step_s"] <= record["handler_s"]


def test_cold_start_bench_times_each_step_in_fresh_processes():
    record = run_bench("cold_start", "--repeats", "1")
    assert all(record[k] > 0 for k in ("import_s", "data_s", "first_round_s", "warm_round_s"))
    assert "dp_accounting" not in record["modules_loaded"] and "sklearn" not in record["modules_loaded"]


def test_handout_bench_hands_out_every_stored_message_with_both_loops():
    record = run_bench("handout", "--clients", "20", "--sampled", "8", "--stored", "8", "--ticks", "1", "--repeats", "1")
    (row,) = record["rows"]
    assert row["handed_out_first_tick"] == 8 and row["flower_tick_ms"] > 0 and row["one_pass_tick_ms"] > 0


@pytest.mark.slow
def test_startup_bench_splits_a_lone_simulation_into_start_up_and_steady_rounds():
    record = run_bench("startup", "--repeats", "1", "--set", "num_clients=2", "--set", "rounds=2",
                       "--set", "models=mlp", *TINY)
    (run,) = record["runs"]["after"]
    assert len(run["round_seconds"]) == 2 and run["wall_s"] > sum(run["round_seconds"])
    assert run["startup_s"] == pytest.approx(run["wall_s"] - 2 * run["round_seconds"][1])
    assert record["ratio"] == pytest.approx(run["startup_s"], rel=1e-3) and record["goal"] == 4.0


@pytest.mark.deployment
def test_deploy_round_bench_runs_a_real_federation_and_reports_its_rounds():
    record = run_bench("deploy_round", "--nodes", "2", "--modes", "fedkd", "--set", "rounds=2", "--set", "models=mlp",
                       *TINY)
    rounds = record["modes"]["fedkd"]["round_seconds"]
    assert len(rounds) == 2 and all(r > 0 for r in rounds)
    assert record["ratio"] is None and record["identical_numbers"] is True  # one mode: nothing to compare with
