"""End to end through Flower's simulation engine (Ray): 3 clients, 2 rounds on digits."""
import json

import pytest

from fedkd.config import make_config
from server.simulate import simulate

# the simulations of this module share one Ray instance and its client actors (tests/conftest.py)
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_ray_per_module")]

TINY = dict(dataset="digits", num_clients=3, rounds=2, alpha=0.5, transfer_size=200, local_test_size=100,
            models=["cnn_small", "mlp"], digest_epochs=2, revisit_epochs=5, seed=7,
            # three clients: a KnFu row often keeps one peer, and these tests are about distillation happening
            **{"server.min_contributors": 1})


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    out = tmp_path_factory.mktemp("sim")
    results = {}
    for name, algorithm in (("knfu_a", "knfu"), ("knfu_b_with_a_much_longer_folder", "knfu"), ("local", "local")):
        cfg = make_config(dict(TINY, algorithm=algorithm))
        results[name] = (simulate(cfg, str(out / name), progress=False), out / name)
    # the same federation written to folders (`fedkd export`), then simulated on them (`fedkd simulate --data`)
    from fedkd.data import build_federation, export_federation

    export_federation(build_federation(make_config(TINY).federation), out / "data")
    cfg = make_config(dict(TINY, algorithm="knfu", data_dir=str(out / "data")))
    results["folders"] = (simulate(cfg, str(out / "folders"), progress=False), out / "folders")
    return results


def test_learns_far_above_chance(runs):
    summary, _ = runs["knfu_a"]
    assert summary["num_classes"] == 10
    assert summary["alma"] > 0.5 and summary["global_acc"] > 0.3  # chance is 0.1
    assert summary["rounds"] == 2 and len(summary["alma_per_round"]) == 2


def test_knfu_differs_from_local(runs):
    knfu, local = runs["knfu_a"][0], runs["local"][0]
    assert knfu["alma_per_round"][0] == local["alma_per_round"][0]  # round 1 has no targets yet
    # distillation happened and changed the clients: per-client accuracies after the round differ
    assert knfu["per_client_local_acc"] != local["per_client_local_acc"] or \
        knfu["per_client_global_acc"] != local["per_client_global_acc"]
    assert knfu["bytes_down_per_client_round"] > local["bytes_down_per_client_round"]


def test_replies_carry_soft_labels_only(runs):
    summary, _ = runs["knfu_a"]
    m, c = summary["transfer_size"], summary["num_classes"]
    assert m * c * 4 <= summary["bytes_up_per_client_round"] <= m * c * 4 + 2048


def test_run_record_files(runs):
    _, out = runs["knfu_a"]
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["round"] for r in lines] == [1, 2]
    assert len(lines[1]["weights"]) == 3 and lines[1]["replies"] == 3
    assert json.loads((out / "config.json").read_text())["algorithm"] == "knfu"
    summary = json.loads((out / "summary.json").read_text())
    assert "label_histograms" not in summary and "label_histograms" not in lines[0]  # nothing private recorded
    assert summary["rejected_replies"] == {} and summary["identity_alarms"] == {}
    assert all((out / "nodes" / f"client-{c}" / "model.pt").is_file() for c in range(3))


def test_same_seed_same_summary(runs):
    # the output folder never travels to clients, so folders of any length give identical messages
    assert runs["knfu_a"][0] == runs["knfu_b_with_a_much_longer_folder"][0]


def test_simulation_on_exported_folders_gives_the_same_numbers(runs):
    """`fedkd simulate --data DIR`: each node reads only DIR/node-<i>; same data and seeds, same numbers (and so
    the same as `fedkd federation --data DIR`, tests/test_deployment.py)."""
    (folders, out), (simulated, _) = runs["folders"], runs["knfu_a"]
    for key in ("alma_per_round", "global_acc_per_round", "per_client_local_acc", "per_client_global_acc"):
        assert folders[key] == simulated[key], key
    assert (folders["dataset"], folders["data"], folders["partition"], folders["transfer_size"]) == \
        ("folder", "data", "folder", 200)  # the records name the data as it is
    config = json.loads((out / "config.json").read_text())
    assert config["transfer_dir"] == str(out.parent / "data" / "transfer") and config["transfer_size"] == 200


def test_transfer_dir_without_data_is_refused_in_simulation(tmp_path):
    from fedkd.config import ConfigError

    with pytest.raises(ConfigError, match="fedkd simulate --data DIR"):
        simulate(make_config(dict(TINY, transfer_dir=str(tmp_path))), str(tmp_path / "run"), progress=False)
    assert not (tmp_path / "run").exists()
    from fedkd.cli import main as fedkd_main  # `fedkd compare` too: refused before Ray starts, no NaN results

    assert fedkd_main(["compare", "--quiet", "--set", f"transfer_dir={tmp_path}", "--out", str(tmp_path / "c")]) == 2
    assert not (tmp_path / "c" / "compare.json").exists()
