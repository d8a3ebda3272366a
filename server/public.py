"""What the server knows of the federation: public facts only (the transfer set's size and fingerprint).

With ``transfer_dir`` (real nodes on their own data) the server reads that folder
and nothing else: it never loads a dataset, so it holds no private data at all.
Without it (a simulation from one dataset) it draws the transfer set from the
dataset exactly as every simulated node does.
"""
from __future__ import annotations

from dataclasses import dataclass

from fedkd.config import Config
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

        transfer = load_transfer_set(cfg.data.transfer_dir)
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
