"""What the server knows of the federation: public facts only (the transfer set's size and fingerprint).

With ``transfer_dir`` (real nodes on their own data) the server reads that folder
and nothing else: it never loads a dataset, so it holds no private data at all.
Without it (a simulation from one dataset) it draws the transfer set from the
dataset exactly as every simulated node does.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fedkd.config import Config, ConfigError
from fedkd.privacy.canary_plan import canary_set, transfer_with_canaries


@dataclass(frozen=True)
class PublicFacts:
    fingerprint: str
    num_classes: int
    transfer_size: int
    input_shape: tuple[int, int, int]
    has_global_test: bool

    def as_dict(self) -> dict:
        return dict(fingerprint=self.fingerprint, num_classes=self.num_classes, transfer_size=self.transfer_size)


def public_facts(cfg: Config) -> PublicFacts:
    """The transfer set every party uses (with the canary images when the study puts them there)."""
    if cfg.data.transfer_dir:
        from fedkd.data.transfer import load_transfer_set

        transfer = load_transfer_set(cfg.data.transfer_dir, image_size=cfg.data.image_hw)
        x, fp, shape, classes = transfer.x, transfer.fingerprint, transfer.input_shape, transfer.num_classes
        has_global_test = bool(cfg.data.global_test_dir)
    else:
        from fedkd.data import build_federation

        fed = build_federation(cfg.federation)
        x, fp, shape, classes = fed.transfer_x, fed.transfer_fingerprint, tuple(fed.input_shape), fed.num_classes
        has_global_test = True
    x, fp = transfer_with_canaries(cfg.canaries, canary_set(cfg.canaries, shape, classes), x, fp)
    return PublicFacts(fingerprint=fp, num_classes=classes, transfer_size=len(x), input_shape=tuple(shape),
                       has_global_test=has_global_test)


def with_data_dir(cfg: Config) -> Config:
    """A run on a folder of node folders (``data_dir``, as ``fedkd export`` writes it): its paths made absolute,
    ``transfer_dir`` and ``global_test_dir`` taken from it unless the config names them."""
    if not cfg.data.data_dir:
        return cfg
    data = Path(cfg.data.data_dir).resolve()
    if not data.is_dir():
        raise ConfigError(f"config key 'data_dir': {data} is not a folder (make one with `fedkd export --out DIR`)")
    cfg = cfg.replace(data_dir=str(data), transfer_dir=str(Path(cfg.data.transfer_dir or data / "transfer").resolve()))
    if not cfg.data.global_test_dir and (data / "global_test").is_dir():
        cfg = cfg.replace(global_test_dir=str(data / "global_test"))
    return cfg


def check_folders(cfg: Config, nodes: int) -> Config:
    """Check every node folder of ``data_dir`` and the transfer set before any process starts; a
    :class:`ConfigError` lists every problem (what ``fedkd check-data`` prints). Returns the config with
    ``transfer_size`` set to the transfer set's real size, so the run's records say what was used."""
    from fedkd.data.check import check_data

    check = check_data(cfg.data.data_dir, transfer_dir=cfg.data.transfer_dir or None, nodes=nodes,
                       image_size=cfg.data.image_hw, allow_symlinks=cfg.data.allow_symlinks)
    if not check.ok:
        problems = check.all_problems
        raise ConfigError(f"{len(problems)} problem(s) in the data folders of {cfg.data.data_dir} (`fedkd check-data "
                          f"{cfg.data.data_dir}` lists them with a summary per node):\n"
                          + "\n".join(f"  {p}" for p in problems))
    try:
        return cfg.replace(transfer_size=len(check.transfer.x))
    except ConfigError:  # larger than the (unused) dataset allows: the summary still records the real size
        return cfg


def simulation_data(cfg: Config) -> Config:
    """The config a simulation can run: with ``data_dir`` every node reads its folder (checked here, before Ray
    starts); ``transfer_dir`` alone is refused, since simulated nodes would draw their data from the dataset and
    every reply would be refused as a transfer-set mismatch."""
    if not cfg.data.data_dir:
        if cfg.data.transfer_dir:
            raise ConfigError("config key 'transfer_dir' is for nodes that read their own files; in a simulation the "
                              "nodes would draw their data from the dataset and be refused (transfer set mismatch). "
                              "Simulate on folders with `fedkd simulate --data DIR` (DIR as `fedkd export` writes it: "
                              "node-<i>/, transfer/), or drop transfer_dir")
        return cfg
    return check_folders(with_data_dir(cfg), cfg.run.num_clients)
