"""How right are the fused targets? Every KnFu variant's targets on the same uploads, scored against labels.

Runs one setting of ``knfu_study.py`` in this process, keeps every round's uploads (N, M, C) as the server
received them, and recomputes each rule's targets from those same uploads, so the rules are compared on equal
input. A target is "right" on an image when its argmax is the label the client itself uses (the image's
class through the client's conflict-group label map); the second number counts only images of classes the
client holds no training example of (what it can learn only from others); the third and fourth weigh each
image by how often the client's own training data holds its class (what its local test set looks like, the
images behind ALMA), in round 1 and over all rounds. The transfer set's labels are read for this diagnostic
only; nothing in a run sees them.

    .venv/bin/python experiments/knfu_targets.py fashion-dir0.1 --seed 1
    .venv/bin/python experiments/knfu_targets.py lp3-val --seed 0
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import knfu_study as study  # noqa: E402

from fedkd.config import load_config, make_config  # noqa: E402
from fedkd.data.conflict import conflict_groups, group_permutation  # noqa: E402
from fedkd.data.federation import build_federation  # noqa: E402
from fedkd.fusion import KnfuSettings, fuse_fedmd, fuse_knfu  # noqa: E402
from fedkd.fusion.registry import FUSION_RULES  # noqa: E402

DEFAULT = make_config({}).view(KnfuSettings).fuse_kwargs(None)  # every knfu.* default, as the server passes them
SESSION11 = {**DEFAULT, "self_share": 0.0}  # the default of sessions 11 and 12: peers only
ISSUE19 = {**SESSION11, "beta": 1.0, "relative": 0.0}  # the default before session 11
RULES = {"fedmd": None,
         "knfu issue 19 (beta 1)": ISSUE19,
         "knfu issue 19, tau 0": {**ISSUE19, "tau": 0.0},
         "knfu session 11 (no self share)": SESSION11,
         "knfu session 11, tau 0": {**SESSION11, "tau": 0.0},
         "knfu default (self share 0.1)": DEFAULT}


def captured_uploads(setting: str, seed: int):
    """(config, [uploads of round 1, 2, ...]) of one run of ``setting`` under the run defaults."""
    overrides = {**study.PROTOCOL, **study.SETTINGS[setting], "algorithm": "knfu", "seed": seed}
    base = None
    if setting.startswith("fashion"):
        base = study.FASHION
        overrides.pop("dataset")
    cfg = load_config(base, [f"{k}={v}" for k, v in overrides.items()])
    rule, saved = FUSION_RULES["knfu"], []

    def keep(p, n_samples=None, **kwargs):
        saved.append(np.array(p, dtype=np.float64))
        return rule.fuse(p, n_samples, **kwargs)

    from fedkd.cli.simulation import run_simulation
    FUSION_RULES["knfu"] = dataclasses.replace(rule, fuse=keep)  # the server runs in this process
    try:
        with tempfile.TemporaryDirectory() as out:
            run_simulation(cfg, Path(out), progress=False)
    finally:
        FUSION_RULES["knfu"] = rule
    return cfg, saved


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("setting", choices=sorted(study.SETTINGS))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    cfg, rounds = captured_uploads(args.setting, args.seed)
    fed = build_federation(cfg.federation)
    y, held = fed._transfer_labels_for_audit, fed.label_histograms > 0
    n, c = held.shape
    local = fed.label_histograms[:, y].astype(np.float64)  # (N, M): how often the client holds each image's class
    local /= np.maximum(local.sum(axis=1, keepdims=True), 1.0)
    kind = study.SETTINGS[args.setting].get("conflict.kind", "none")
    if kind == "label_permutation":
        groups = conflict_groups(n, int(study.SETTINGS[args.setting]["conflict.groups"]))
        labels = np.stack([group_permutation(int(g), c, args.seed)[y] for g in groups])
    else:
        labels = np.tile(y, (n, 1))
    unknown = ~held[:, y]  # (N, M): images of a class the client holds none of
    print(f"{args.setting} seed {args.seed}: {len(rounds)} rounds; % of targets right "
          "(all images / images of classes the client does not hold, mean over rounds; images weighted by the "
          "client's own class frequencies: round 1 / mean over rounds)")
    warnings.simplefilter("ignore", RuntimeWarning)
    for name, kwargs in RULES.items():
        right, right_unknown, right_own = [], [], []
        for p in rounds:
            targets = (fuse_fedmd(p) if kwargs is None else fuse_knfu(p, **kwargs)).targets.argmax(axis=2)
            ok = targets == labels
            right.append(ok.mean())
            right_unknown.append(ok[unknown].mean() if unknown.any() else np.nan)
            right_own.append((ok * local).sum(axis=1).mean())
        print(f"  {name:42s} {100 * np.mean(right):5.1f} / {100 * np.nanmean(right_unknown):5.1f}"
              f"   own classes {100 * right_own[0]:5.1f} / {100 * np.mean(right_own):5.1f}")


if __name__ == "__main__":
    main()
