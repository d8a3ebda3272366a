"""Can round 1 tell a single-class swapper from an honest peer that lacks the class? (issue 19)

Captures the round-1 uploads of one run (under the run defaults; `knfu_targets.captured_uploads`) and, for
every ordered pair (client n, peer m), a *relabel score*: over each class c, the images that n labels c with
confidence > 0.5 (at least 5 of them), the largest fraction that m sends to one single other class; the
score is the largest over c. A swap c -> c' scores about 1 on class c. Printed: each honest client's score
for the malicious clients next to the honest pairs' distribution, and the weight KnFu's default gives the
malicious clients over an honest peer's (round 1).

    .venv/bin/python experiments/swap_round1.py swap1 --seeds 0,1,2
    .venv/bin/python experiments/swap_round1.py dir0.1-val --seeds 0,1,2    # no attack: honest pairs only
"""
from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import knfu_targets  # noqa: E402

from fedkd.fusion import fuse_knfu  # noqa: E402

CONFIDENT, MIN_IMAGES = 0.5, 5


def relabel_scores(p: np.ndarray) -> np.ndarray:
    """(N, N): for client n and peer m, the largest share of n's confident class-c images that m sends to
    one single other class, over the classes c."""
    n, _, c = p.shape
    labels, confident = p.argmax(axis=2), p.max(axis=2) > CONFIDENT
    scores = np.zeros((n, n))
    for i in range(n):
        for cls in range(c):
            mine = (labels[i] == cls) & confident[i]
            if mine.sum() < MIN_IMAGES:
                continue
            counts = np.eye(c)[labels[:, mine]].sum(axis=1)  # (N, C): where every client sends those images
            counts[:, cls] = 0.0
            scores[i] = np.maximum(scores[i], counts.max(axis=1) / mine.sum())
        scores[i, i] = 0.0
    return scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("setting", choices=sorted(knfu_targets.study.SETTINGS))
    parser.add_argument("--seeds", default="0")
    args = parser.parse_args()
    warnings.simplefilter("ignore", RuntimeWarning)
    for seed in [int(s) for s in args.seeds.split(",")]:
        cfg, rounds = knfu_targets.captured_uploads(args.setting, seed)
        p = rounds[0]
        n = len(p)
        k = int(cfg["fault.num_malicious"]) if cfg["fault.kind"] != "none" else 0
        bad = list(range(n - k, n))  # the fault plan's default: the last k clients
        honest = [i for i in range(n) if i not in bad]
        scores = relabel_scores(p)
        weights = fuse_knfu(p, **knfu_targets.DEFAULT).weights
        pairs = np.array([scores[i, j] for i in honest for j in honest if i != j])
        print(f"{args.setting} seed {seed}, round 1: honest pairs' relabel score median {np.median(pairs):.2f}, "
              f"90th percentile {np.percentile(pairs, 90):.2f}, share at >= 0.9: {np.mean(pairs >= 0.9):.2f}")
        for b in bad:
            ratio = [weights[i, b] / max(np.mean([weights[i, j] for j in honest if j != i]), 1e-12) for i in honest]
            print(f"  malicious client {b}: its score from each honest client "
                  f"{' '.join(f'{scores[i, b]:.2f}' for i in honest)}; KnFu weight / honest peer's "
                  f"{' '.join(f'{r:.2f}' for r in ratio)} (mean {np.mean(ratio):.2f})")


if __name__ == "__main__":
    main()
