"""Fusion benchmark: local/fedmd/dsfl/knfu for N clients vs one matrix product of the same operand sizes.

KnFu is timed with each of its distances (``knfu.distance``): ``knfu`` -- the headline -- is the rule a run
gets by default (every ``knfu.*`` key's default), and ``knfu_<distance>`` every measure.
profile_kl is the original rule; sample_kl, sample_hellinger and class_hellinger are one more
(N, M*C)@(M*C, N) product (class_hellinger's classes partition the samples, so its per-class products add up
to one); sample_js needs a logarithm per pair, entry and sample (N^2 M C / 2 of them), so it is timed up to
``--js-max`` clients only.

For every N the rules fuse N x M x C random soft labels (M transfer samples, C classes). The yardstick is
one BLAS product (N, N) @ (N, M*C) in float64 -- the operand sizes of KnFu's personalised mix, in the
precision fusion computes in. Peak memory is read with tracemalloc (numpy reports its buffers to it) and
given per soft-label entry, so O(N*M*C) shows as a flat number across N.

    .venv/bin/python experiments/bench/fusion.py                 # N = 10, 100, 1000, 5000 (~3 min)
    .venv/bin/python experiments/bench/fusion.py --sizes 10,100,1000 --repeats 5
    .venv/bin/python experiments/bench/fusion.py --before        # also time the old einsum loop (N <= 1000)
    .venv/bin/python experiments/bench/fusion.py --sizes 100,1000 --js-max 1000   # the KnFu distances

Goal: knfu <= 3x the product at N = 1000, memory O(N*M*C); each distance's ratio is reported next to it.
"""
from __future__ import annotations

import argparse
import time
import tracemalloc

import _common  # noqa: F401  (sys.path and environment)
import numpy as np
from _common import finish, median, say

from fedkd.fusion import fuse
from fedkd.fusion.knfu import effectiveness_weights, knowledge_profiles, pairwise_kl

ALGORITHMS = ("local", "fedmd", "dsfl", "knfu")
KNFU_DISTANCES = ("profile_kl", "sample_kl", "sample_hellinger", "class_hellinger", "sample_js")
GOAL_RATIO = 3.0
GOAL_N = 1000


def random_soft_labels(n: int, m: int, c: int, seed: int = 0) -> np.ndarray:
    """Peaked, non-IID-looking probability rows: softmax of scaled Gaussian logits plus a client bias."""
    rng = np.random.default_rng(seed)
    logits = rng.standard_normal((n, m, c), dtype=np.float32) * 2.0
    logits += rng.standard_normal((n, 1, c), dtype=np.float32) * 2.0  # each client's label skew
    logits -= logits.max(axis=2, keepdims=True)
    np.exp(logits, out=logits)
    logits /= logits.sum(axis=2, keepdims=True)
    return logits


def einsum_knfu_reference(p32: np.ndarray) -> np.ndarray:
    """KnFu as it was before this benchmark: the same weights, mixed with an un-optimised einsum."""
    p = p32.astype(np.float64)
    w = effectiveness_weights(pairwise_kl(knowledge_profiles(p)), 10.0, None, False)
    return np.einsum("nm,mic->nic", w, p).astype(np.float32)


def best_of(fn, repeats: int) -> float:
    """Median wall time of ``repeats`` calls."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return median(times)


def peak_bytes(fn) -> int:
    """Peak bytes allocated (numpy buffers included) while ``fn`` runs, beyond what existed before."""
    tracemalloc.start()
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    fn()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak - base


def default_knfu_params() -> dict:
    """The KnFu a run gets without any --set: every knfu.* key's default, as the server passes them."""
    from fedkd.config import make_config
    from fedkd.fusion import KnfuSettings

    return make_config({}).view(KnfuSettings).fuse_kwargs(None)


def variants(n: int, js_max: int) -> dict:
    """name -> (algorithm, params) of every rule timed at this N."""
    out = {alg: (alg, default_knfu_params() if alg == "knfu" else {}) for alg in ALGORITHMS}
    for d in KNFU_DISTANCES:
        if d != "sample_js" or n <= js_max:
            out[f"knfu_{d}"] = ("knfu", {"distance": d})
    return out


def bench_size(n: int, m: int, c: int, repeats: int, before: bool, js_max: int = 1000) -> dict:
    p = random_soft_labels(n, m, c)
    reps = repeats if n <= 1000 else 1
    w = np.random.default_rng(1).random((n, n))
    flat = p.astype(np.float64).reshape(n, m * c)
    row = {"N": n, "M": m, "C": c, "entries": n * m * c}
    rules = variants(n, js_max)
    # Interleave the yardstick with the rules so background load hits both alike.
    product_times, times = [], {a: [] for a in rules}
    for _ in range(reps):
        product_times.append(best_of(lambda: w @ flat, 1))
        for name, (alg, params) in rules.items():
            times[name].append(best_of(lambda: fuse(alg, p, **params), 1))
    del flat
    row["product_s"] = median(product_times)
    for name, (alg, params) in rules.items():
        row[f"{name}_s"] = median(times[name])
        row[f"{name}_ratio"] = row[f"{name}_s"] / row["product_s"]
        row[f"{name}_peak_bytes_per_entry"] = peak_bytes(lambda: fuse(alg, p, **params)) / row["entries"]
    if before and n <= 1000:
        row["knfu_einsum_s"] = best_of(lambda: einsum_knfu_reference(p), 1)
    return row


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10,100,1000,5000", help="comma-separated client counts N")
    parser.add_argument("--transfer", type=int, default=1000, help="transfer samples M")
    parser.add_argument("--classes", type=int, default=10, help="classes C")
    parser.add_argument("--repeats", type=int, default=3, help="repeats per size (1 above N=1000)")
    parser.add_argument("--before", action="store_true", help="also time the old einsum KnFu (N <= 1000)")
    parser.add_argument("--js-max", type=int, default=1000, help="time knfu with sample_js up to this N")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]

    rows = []
    for n in sizes:
        row = bench_size(n, args.transfer, args.classes, args.repeats, args.before, args.js_max)
        rows.append(row)
        say(f"N={n:5d}  product {row['product_s']:.4f}s  " + "  ".join(
            f"{a} {row[f'{a}_s']:.4f}s ({row[f'{a}_ratio']:.2f}x, {row[f'{a}_peak_bytes_per_entry']:.1f} B/entry)"
            for a in variants(n, args.js_max))
            + (f"  einsum-knfu {row['knfu_einsum_s']:.3f}s" if "knfu_einsum_s" in row else ""))
    at_goal = next((r for r in rows if r["N"] == GOAL_N), rows[-1])
    per_entry = [r["knfu_peak_bytes_per_entry"] for r in rows if r["N"] >= 100]
    return finish("fusion", at_goal["knfu_ratio"], GOAL_RATIO, goal_at_N=at_goal["N"],
                  knfu_default=default_knfu_params(),
                  met=at_goal["knfu_ratio"] <= GOAL_RATIO,
                  knfu_peak_bytes_per_entry_max=max(per_entry) if per_entry else None,
                  knfu_distance_ratios={d: round(at_goal[f"knfu_{d}_ratio"], 3) for d in KNFU_DISTANCES
                                        if f"knfu_{d}_ratio" in at_goal},
                  rows=[{k: (round(v, 5) if isinstance(v, float) else v) for k, v in r.items()} for r in rows])


if __name__ == "__main__":
    main()
