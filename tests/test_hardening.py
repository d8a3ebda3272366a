"""Nothing unbounded: replies sized before they are read, client text clipped, only regular files read,
refusals named on the console and a failed run said so."""
import json
import os
import tracemalloc
import zipfile

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, Message

from fedkd import protocol
from fedkd.files import UnsafeInput, clip, npz_members, read_bytes, regular_dir, regular_file
from fedkd.report.refusals import RefusalLog, never_contributed, run_failure
from server.identity import IdentityBook
from server.screening import reply_limit, screen

M, C, FP, N = 40, 10, "f" * 16, 3


def _reply(content, src=7):
    message = Message(content=content, dst_node_id=src, message_type="train")
    message.metadata.__dict__["_src_node_id"] = src  # noqa: the engine sets this on real replies
    return message


def _content(soft=None, metrics=None, weights=None):
    soft = np.random.default_rng(0).dirichlet(np.ones(C), size=M).astype(np.float32) if soft is None and \
        weights is None else soft
    return protocol.build_reply_content(round_num=2, fingerprint=FP, partition_id=1, model="mlp", num_examples=50,
                                        metrics={"acc_local": 0.9, "acc_global": 0.5, **(metrics or {})},
                                        soft_labels=soft, weights=weights)


def _rules(**overrides):
    return protocol.ReplyRules(**{**dict(round=2, fingerprint=FP, shape=(M, C), num_partitions=N,
                                         max_num_examples=10**6), **overrides})


def _book():
    book = IdentityBook(N)
    book._bind(7, 1)
    return book


@pytest.mark.parametrize("fedavg", [False, True])
def test_a_400_mb_reply_is_refused_from_its_metadata_without_copying_it(fedavg):
    """Peak memory while rejecting it stays far below 2x the limit: the 400 MB are never copied or decoded."""
    huge = Array(dtype="float32", shape=(100 * 2**20,), stype="numpy.ndarray", data=bytes(400 * 2**20))
    if fedavg:
        spec = {"w": ((4,), "float32")}
        rules = _rules(shape=None, weights_spec=spec)
        content = _content(weights=ArrayRecord({"w": Array(np.ones(4, np.float32))}))
        content["arrays"]["w"] = huge
    else:
        rules = _rules()
        content = _content()
        content["knowledge"]["soft_labels"] = huge
    limit = reply_limit(rules)
    message = _reply(content)
    tracemalloc.start()
    try:
        out = screen([message], rules, _book(), expected_nodes={7})
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert out.accepted == [] and out.rejected == {"oversized": 1}
    assert peak <= 2 * limit, (peak, limit)
    assert out.refusals["client 1"].startswith("oversized: about 4194")


def test_an_honest_reply_fits_the_limit_and_unknown_metric_keys_are_only_counted():
    metrics = {f"k{i}": 1.0 for i in range(100)}
    out = screen([_reply(_content(metrics=metrics))], _rules(), _book(), expected_nodes={7})
    assert [a.client_id for a in out.accepted] == [1]
    assert out.dropped_metrics == {"client 1": 100}  # a count per client: the names are never kept
    many = {f"k{i}": 1.0 for i in range(200_000)}
    out = screen([_reply(_content(metrics=many))], _rules(), _book(), expected_nodes={7})
    assert out.rejected == {"oversized": 1}  # 200,000 keys do not fit a soft-label reply


def test_a_clients_text_is_escaped_and_cut_in_logs_and_records(caplog):
    from flwr.app import Error

    error = Message(Error(code=1, reason="boom\nround 9: rejected reply from client 0: forged" + "x" * 20_000_000),
                    reply_to=Message(content=_content(), dst_node_id=7, message_type="train"))
    error.metadata.__dict__["_src_node_id"] = 7
    out = screen([error], _rules(), _book(), expected_nodes={7})
    why = out.refusals["client 1"]
    assert "\n" not in why and "\\n" in why and len(why) < 300
    assert all(len(line) < 400 for line in caplog.text.splitlines())
    assert clip("a\x1b[31mb") == "a\\x1b[31mb" and clip("карэ") == "карэ"


def test_only_regular_files_are_read(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(UnsafeInput, match="not a regular file \\(a FIFO\\)"):
        read_bytes(fifo, 10)
    with pytest.raises(UnsafeInput, match="character device"):
        read_bytes("/dev/zero", 10)
    with pytest.raises(UnsafeInput, match="is not a folder"):
        regular_dir(tmp_path / "fifo")
    loop = tmp_path / "loop"
    loop.symlink_to(loop)
    with pytest.raises(UnsafeInput, match="cannot be read"):
        regular_file(loop)
    big = tmp_path / "big"
    big.write_bytes(b"x" * 11)
    with pytest.raises(UnsafeInput, match="11 bytes, more than the 10"):
        read_bytes(big, 10)


def test_a_compressed_archive_is_bounded_by_its_declared_sizes(tmp_path):
    bomb = tmp_path / "bomb.npz"
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("x.npy", bytes(64 * 2**20))  # 64 MiB of zeros: about 64 KB on disk
    assert bomb.stat().st_size < 2**20
    with pytest.raises(UnsafeInput, match="declares 67108864 bytes uncompressed"):
        npz_members(bomb, max_bytes=2**20)
    with pytest.raises(UnsafeInput, match="is compressed"):
        npz_members(bomb, max_bytes=2**30, stored_only=True)


def test_refusals_are_named_first_time_and_when_they_change_and_failure_is_judged():
    records = [{"round": 1, "replies": 1, "per_client_local_acc": {"0": 0.5},
                "refusals": {"client 1": "bad_shape: x", "client 2": "no_reply: y"}},
               {"round": 2, "replies": 1, "per_client_local_acc": {"0": 0.5},
                "refusals": {"client 1": "bad_shape: x", "client 2": "non_finite: z"}}]
    log = RefusalLog()
    assert log.lines(records[0]) == ["round 1: client 1 refused: bad_shape: x", "round 1: client 2 refused: no_reply: y"]
    assert log.lines(records[1]) == ["round 2: client 2 refused: non_finite: z"]
    assert never_contributed(records, 3) == "2 of 3 nodes never contributed a valid reply (client 1, client 2)"
    assert run_failure(records, min_replies=1, max_failed_rounds=3) is None
    assert run_failure(records, min_replies=2, max_failed_rounds=2).startswith("the last 2 rounds")
    none_valid = [dict(r, replies=0, per_client_local_acc={}) for r in records]
    assert run_failure(none_valid, 1, 3) == "no reply was valid in any of the 2 rounds"


@pytest.mark.parametrize("setting,message", [
    ("canaries.count=1000000", "'canaries.count': 1000000 is not allowed; expected within [1, 10000]"),
    ("sim.client_cpus=0.001", "'sim.client_cpus': 0.001 is not allowed"),
    ("sim.num_cpus=100000", "'sim.num_cpus': 100000 is not allowed"),
    ("lr=inf", "'lr': 'inf' is not a finite number"),
])
def test_size_like_keys_are_bounded_and_refused_in_one_line(tmp_path, capsys, setting, message):
    from fedkd.cli import main

    assert main(["simulate", "--quiet", "--out", str(tmp_path / "r"), "--set", setting]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()


def test_too_many_client_actors_are_refused():
    from fedkd.config import ConfigError, make_config

    with pytest.raises(ConfigError, match="would start 1000 client actors"):
        make_config({"sim.num_cpus": 10, "sim.client_cpus": 0.01})


def test_config_files_are_read_only_when_regular_small_and_shallow(tmp_path, capsys):
    from fedkd.cli import main

    deep = tmp_path / "deep.toml"
    deep.write_text("a = " + "[" * 3000 + "]" * 3000)
    fifo = tmp_path / "fifo.toml"
    os.mkfifo(fifo)
    sparse = tmp_path / "sparse.toml"
    with open(sparse, "wb") as fh:
        fh.truncate(2**31)  # 2 GiB that take no disk
    for path, message in ((deep, "nests tables or arrays too deeply"), (fifo, "is not a regular file (a FIFO)"),
                          (sparse, "2147483648 bytes, more than the 1048576 allowed")):
        assert main(["simulate", "--quiet", "--out", str(tmp_path / "r"), "--config", str(path)]) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err


def test_a_gzip_bomb_idx_file_stops_at_its_bound(tmp_path, monkeypatch):
    import zlib

    from fedkd.data import idx

    monkeypatch.setattr(idx, "MAX_IDX_BYTES", 2**20)  # the real bound is 256 MB; the behaviour is the same
    squeezer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    bomb = tmp_path / "images.gz"
    bomb.write_bytes(squeezer.compress(bytes(64 * 2**20)) + squeezer.flush())
    tracemalloc.start()
    try:
        with pytest.raises(idx.IdxFormatError, match="inflates to more than 1048576 bytes"):
            idx.read_idx(bomb)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 * 2**20


def test_registry_and_transfer_files_must_be_regular_and_bounded(tmp_path, monkeypatch):
    from fedkd.data.transfer import TransferSetError, load_transfer_set
    from fedkd.node_identity import IdentityError, load_registry

    fifo = tmp_path / "registry.json"
    os.mkfifo(fifo)
    with pytest.raises(IdentityError, match="not a regular file"):
        load_registry(fifo)
    with pytest.raises(IdentityError, match="character device"):
        load_registry("/dev/zero")
    folder = tmp_path / "transfer"
    folder.mkdir()
    with open(folder / "classes.txt", "wb") as fh:
        fh.truncate(2**31)  # sparse: 2 GiB of nothing
    with pytest.raises(TransferSetError, match="more than the 1048576 allowed"):
        load_transfer_set(folder)
    (folder / "classes.txt").write_text("a\nb\n")
    with zipfile.ZipFile(folder / "transfer.npz", "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("x.npy", bytes(16))
    from fedkd.data import transfer

    monkeypatch.setattr(transfer, "MAX_NPZ_BYTES", 8)  # the real bound is 4 GiB; the check is the same
    with pytest.raises(TransferSetError, match="declares 16 bytes uncompressed"):
        load_transfer_set(folder)


def test_compare_marks_a_failed_algorithm_and_exits_non_zero(tmp_path, monkeypatch, capsys):
    """The table and compare.json say which algorithm failed; the command exits 1. (The runs themselves are
    replaced by their summaries here: what a failed run's summary holds is tested through the engine.)"""
    import fedkd.cli as cli

    def fake_run(cfg, out, **_):
        summary = {"alma": 0.9, "global_acc": 0.8, "alma_per_round": [0.9], "global_acc_per_round": [0.8],
                   "bytes_up_per_client_round": 1.0, "bytes_down_per_client_round": 1.0}
        if cfg["algorithm"] == "fedmd":
            summary.update(alma=float("nan"), failure="no reply was valid in any of the 1 rounds")
        return summary

    monkeypatch.setattr(cli, "run_simulation", fake_run)
    assert cli.main(["compare", "--out", str(tmp_path), "--algorithms", "knfu,fedmd"]) == 1
    captured = capsys.readouterr()
    assert "fedmd (FAILED)" in captured.out
    assert "fedkd compare: fedmd FAILED: no reply was valid" in captured.err
    assert json.loads((tmp_path / "compare.json").read_text())["failed"] == {
        "fedmd": "no reply was valid in any of the 1 rounds"}


@pytest.mark.slow
def test_a_run_whose_replies_are_never_valid_fails_loudly(tmp_path, capsys):
    from fedkd.cli import main

    sets = ["num_clients=3", "rounds=2", "models=mlp", "transfer_size=60", "local_test_size=40", "revisit_epochs=1",
            "digest_epochs=1", "fault.malformed=0:*:bad_shape,1:*:bad_shape,2:1:nan,2:2:bad_dtype"]
    assert main(["simulate", "--quiet", "--out", str(tmp_path / "r")] + [a for s in sets for a in ("--set", s)]) == 1
    err = capsys.readouterr().err
    assert err.count("client 0 refused: bad_shape") == 1  # named once, not every round
    assert "round 1: client 2 refused: " in err and "1 NaN/Inf entries" in err  # then a new reason, shown again
    assert "round 2: client 2 refused: bad_dtype" in err
    assert "3 of 3 nodes never contributed a valid reply (client 0, client 1, client 2)" in err
    assert "the run FAILED: no reply was valid in any of the 2 rounds" in err
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert summary["failure"] == "no reply was valid in any of the 2 rounds" and summary["rounds"] == 2
