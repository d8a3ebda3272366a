"""Bad config keys and values are refused before any training, naming the key."""
import pytest

from fedkd.config import ConfigError, load_config, make_config


def test_defaults_are_valid_and_complete():
    cfg = make_config()
    for key in ("dataset", "algorithm", "num_clients", "rounds", "alpha", "seed", "models", "transfer_size"):
        assert key in cfg
    assert cfg["dataset"] == "digits" and cfg["algorithm"] == "knfu"


def test_cli_assignments_are_coerced():
    cfg = load_config(None, ["rounds=3", "alpha=0.1", "models=mlp,cnn_small", "knfu.include_self=true",
                             "num-clients=4"])
    assert cfg["rounds"] == 3 and cfg["alpha"] == 0.1 and cfg["num_clients"] == 4
    assert cfg["models"] == ["mlp", "cnn_small"] and cfg["knfu.include_self"] is True


@pytest.mark.parametrize("assignment,key", [
    ("rounds=0", "rounds"), ("rounds=two", "rounds"), ("alpha=-1", "alpha"), ("alpha=abc", "alpha"),
    ("dataset=imagenet", "dataset"), ("algorithm=fedsgd", "algorithm"), ("models=resnet999", "models"),
    ("models=", "models"), ("knfu.tau=2", "knfu.tau"), ("knfu.include_self=maybe", "knfu.include_self"),
    ("transfer_size=0", "transfer_size"), ("num_clients=2.5", "num_clients"),
])
def test_bad_values_name_the_key(assignment, key):
    with pytest.raises(ConfigError, match=f"'{key}'"):
        load_config(None, [assignment])


def test_unknown_key_and_malformed_assignment():
    with pytest.raises(ConfigError, match="unknown config key 'rnds'"):
        load_config(None, ["rnds=3"])
    with pytest.raises(ConfigError, match="did you mean 'knfu.beta'"):
        load_config(None, ["beta=3"])
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        load_config(None, ["rounds"])


def test_fedavg_needs_one_architecture():
    with pytest.raises(ConfigError, match="'models'"):
        load_config(None, ["algorithm=fedavg", "models=mlp,cnn_small"])


def test_toml_file(tmp_path):
    path = tmp_path / "exp.toml"
    path.write_text('dataset = "digits"\nrounds = 2\n[knfu]\nbeta = 5.0\n')
    cfg = load_config(path, ["rounds=4"])
    assert cfg["rounds"] == 4 and cfg["knfu.beta"] == 5.0
    bad = tmp_path / "bad.toml"
    bad.write_text("rounds = = 2")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.toml")


@pytest.mark.parametrize("assignment,key", [
    ("local_test_size=1000000000", "local_test_size"), ("transfer_size=99999999", "transfer_size"),
    ("global_test_size=5000", "global_test_size"), ("private_pool_size=2000", "private_pool_size"),
    ("num_clients=1000", "num_clients"), ("canaries.references=10000000", "canaries.references"),
    ("clients_per_round=11", "clients_per_round"), ("server.max_num_examples=0", "server.max_num_examples"),
])
def test_sizes_beyond_what_the_dataset_holds_are_refused_by_name(assignment, key):
    with pytest.raises(ConfigError, match=f"'{key}'"):
        load_config(None, [assignment])


def test_an_absurd_size_is_refused_by_the_command_line_before_anything_loads(tmp_path, capsys):
    from fedkd.cli import main

    assert main(["simulate", "--out", str(tmp_path / "r"), "--set", "local_test_size=1000000000"]) == 2
    err = capsys.readouterr().err
    assert "local_test_size" in err and "exceeds 449" in err and "Traceback" not in err
    assert not (tmp_path / "r").exists()


def test_an_occupied_out_folder_is_refused_unless_resuming(tmp_path, capsys):
    from fedkd.cli import main
    from server.rounds import check_out_dir

    (tmp_path / "metrics.jsonl").write_text("{}\n")
    assert main(["simulate", "--out", str(tmp_path), "--set", "rounds=1"]) == 2
    assert "already holds a run's records" in capsys.readouterr().err
    check_out_dir(tmp_path, resume=True)  # resuming that run is fine (its checkpoint is checked then)
    stray = tmp_path / "other"
    stray.mkdir()
    (stray / "checkpoint-r40.npz").write_bytes(b"not ours")
    assert main(["simulate", "--out", str(stray), "--set", "rounds=1"]) == 2
    assert "already holds other files (checkpoint-r40.npz)" in capsys.readouterr().err
    assert (stray / "checkpoint-r40.npz").read_bytes() == b"not ours"
    assert main(["simulate", "--out", "/dev/null", "--set", "rounds=1"]) == 2
    assert "is not a folder" in capsys.readouterr().err


def test_clients_receive_only_client_keys():
    sent = make_config({"out": "/x", "knfu.beta": 3, "server.reply_timeout": 5}).for_clients()
    assert {"out", "knfu.beta", "server.reply_timeout", "algorithm"}.isdisjoint(sent)
    assert {"seed", "temperature", "privacy.swing", "rounds"} <= set(sent)


def test_typed_views_carry_the_values():
    cfg = make_config({"seed": 4, "lr": 0.01, "privacy.swing": True, "clients_per_round": 3})
    assert cfg.training.seed == 4 and cfg.training.lr == 0.01 and cfg.privacy.swing is True
    assert cfg.server.sampling and cfg.server.clients_per_round == 3 and cfg.federation.seed == 4


def test_fedkd_keys_lists_the_same_keys_and_defaults_as_before_the_owners_declared_them():
    """tests/fixtures/keys.json was recorded from the central table (attack.* renamed fault.*); keys added since:
    fault.swap, fault.collude, fault.collude_noise, fault.echo_noise, fault.echo_with, knfu.scale, knfu.guard, knfu.one_vote, knfu.agreement, knfu.relative, knfu.self_share,
    server.min_contributors, server.echo_tolerance, server.echo_ramp; defaults changed on purpose since: order=joint, distill_weight=0.3,
    knfu.distance=class_hellinger, knfu.scale=nearest, knfu.beta=0.25 (issue 19)."""
    import json
    from pathlib import Path

    from fedkd.config import describe_keys, schema

    expected = json.loads((Path(__file__).parent / "fixtures" / "keys.json").read_text())
    assert {k: spec.default for k, spec in schema().items()} == expected
    listed = [line.split()[0] for line in describe_keys().splitlines()]
    assert sorted(listed) == sorted(expected)


def test_old_attack_keys_are_accepted_with_a_deprecation_message(caplog):
    with caplog.at_level("WARNING"):
        cfg = make_config({"attack.kind": "flip", "attack.num_malicious": 1})
    assert cfg["fault.kind"] == "flip" and cfg.faults.num_malicious == 1
    assert "deprecated" in caplog.text and "fault.kind" in caplog.text


def test_non_finite_numbers_are_refused_at_config_time():
    for key in ("lr", "alpha", "knfu.beta", "server.reply_timeout"):
        with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
            make_config({key: "inf"})
        with pytest.raises(ConfigError, match="finite"):
            make_config({key: float("nan")})
