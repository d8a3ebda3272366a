"""KnFu effectiveness measures (issue 13): tuning, the knowledge-conflict benchmark, liars, the Dirichlet grid.

    python experiments/knfu_study.py tune     [--seeds 0,1]        # validation split: pick knfu.distance / beta
    python experiments/knfu_study.py conflict [--setting lp2 --seeds 0,1,2]   # settings: lp2 lp3 rot2 fashion-lp2
    python experiments/knfu_study.py liars    [--seeds 0]
    python experiments/knfu_study.py grid     [--seeds 0,1,2]
    python experiments/knfu_study.py edges    [--setting lp3,collude --seeds 0,1,2]  # issue 19: small groups,
                                              # colluders, one swapper, skew (+ lp3-val, dir0.1-val: the choice;
                                              # fashion-dir0.1, fashion-dir0.5: strong skew on Fashion-MNIST;
                                              # lp4, lp5: groups of three and two, with and without the
                                              # privacy floor server.min_contributors)
    python experiments/knfu_study.py heatmap  # experiments/runs/knfu_conflict_weights.png from the lp2 seed-0 runs
    python experiments/knfu_study.py tables   # every Markdown table of docs/results.md / docs/robustness.md

Every run goes through Flower's simulation engine as ``fedkd simulate`` does (``run_simulation``, which also
installs the liars of ``fault.*``). Each finished run is one JSON line in ``experiments/results/knfu_<sub>.jsonl``
(name, overrides, seconds, summary numbers and the measurements below); a name already in the ledger is
skipped, so an interrupted study resumes where it stopped. Run folders go to ``experiments/runs/knfu/``.

Common protocol (digits): 10 clients, cnn_small/mlp alternating, 5 rounds, M = 300, ``order = joint``,
``distill_weight = 0.3``, T = 3 (the project defaults otherwise). ``--rounds`` overrides the rounds of a
(new) run; the name then carries ``-r<rounds>``.

"knfu default" is resolved when the run is planned: the registry's current ``knfu.distance``/``knfu.beta``
are written into the run's overrides, so the ledger always says which rule ran.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent))

from fedkd.config import load_config, schema  # noqa: E402
from fedkd.data.conflict import conflict_groups  # noqa: E402
from fedkd.run_records import read_rounds, weight_matrix  # noqa: E402

RESULTS = ROOT / "results"
RUNS = ROOT / "runs" / "knfu"
FASHION = ROOT / "configs" / "fashion.toml"
N = 10

PROTOCOL = {"dataset": "digits", "num_clients": N, "order": "joint", "distill_weight": 0.3,
            "save_models": False}
SETTINGS = {
    # tuning / conflict settings
    "lp2": {"conflict.kind": "label_permutation", "conflict.groups": 2, "partition": "iid"},
    "lp3": {"conflict.kind": "label_permutation", "conflict.groups": 3, "partition": "iid"},
    "rot2": {"conflict.kind": "rotation", "conflict.groups": 2, "partition": "iid"},
    "fashion-lp2": {"conflict.kind": "label_permutation", "conflict.groups": 2, "partition": "iid"},
    "dir0.5": {"partition": "dirichlet", "alpha": 0.5},
    "dir0.1": {"partition": "dirichlet", "alpha": 0.1},
    "dir5": {"partition": "dirichlet", "alpha": 5.0},
}
TUNE_CANDIDATES = [("profile_kl", 10.0), ("sample_kl", 3.0), ("sample_kl", 10.0), ("sample_js", 3.0),
                   ("sample_hellinger", 3.0),
                   # added after seed 0: beta = 3 cost 4-5 points of global accuracy in the plain case
                   ("sample_kl", 1.0), ("sample_hellinger", 1.0)]
LIE_KINDS = ("random", "flip", "shift", "mimic", "echo")  # echo: session 15
# the liars study's runs: each kind, and (session 15) echoes without the server's echo check
LIAR_RUNS = {**{kind: {} for kind in LIE_KINDS}, "echo-et0": {"server.echo_tolerance": 0.0},
             # session 16: echoes blurred with their own random rows, to escape the echo check
             **{f"echo-n{int(e * 100):02d}": {"fault.echo_noise": e} for e in (0.05, 0.1, 0.2)}}
LIARS = 3


def default_knfu() -> tuple[str, float, str, bool, float, float, float]:
    keys = schema()
    return (keys["knfu.distance"].default, float(keys["knfu.beta"].default), keys["knfu.scale"].default,
            bool(keys["knfu.agreement"].default), float(keys["knfu.relative"].default),
            float(keys["knfu.self_share"].default), float(keys["server.echo_ramp"].default))


def knfu(distance: str, beta: float, scale: str = "median", agreement: bool = False,
         relative: float = 0.0, self_share: float = 0.0, echo_ramp: float = 0.0) -> tuple[str, dict]:
    """A KnFu variant, its scale, agreement factor, relative cut, self share and the server's echo ramp pinned
    (the issue-13 rules ran with the median scale, no agreement factor, no relative cut, no self share and no
    ramp; the label names any other)."""
    label = (f"knfu-{distance}-b{beta:g}" + ("" if scale == "median" else f"-{scale}")
             + ("-agree" if agreement else "") + (f"-rel{relative:g}" if relative else "")
             + (f"-ss{self_share:g}" if self_share else "") + (f"-er{echo_ramp:g}" if echo_ramp else ""))
    return label, {"algorithm": "knfu", "knfu.distance": distance, "knfu.beta": beta, "knfu.scale": scale,
                   "knfu.agreement": agreement, "knfu.relative": relative, "knfu.self_share": self_share,
                   "server.echo_ramp": echo_ramp}


def variants(names: list[str]) -> list[tuple[str, dict]]:
    out = []
    for name in names:
        if name == "knfu-profile":
            out.append(knfu("profile_kl", 10.0))
        elif name == "knfu-default":
            out.append(knfu(*default_knfu()))
        elif name == "knfu-near":  # the issue-19 rule before the agreement factor
            out.append(knfu("class_hellinger", 1.0, "nearest", False))
        else:
            out.append((name, {"algorithm": name}))
    seen, unique = set(), []
    for label, o in out:  # the default may be profile_kl b10 itself
        if label not in seen:
            seen.add(label)
            unique.append((label, o))
    return unique


# ---------------------------------------------------------------- plans: (name, setting, variant, seed, overrides)

def plan_tune(seeds, settings=None):
    for seed in seeds:
        for setting in settings or ("lp2", "dir0.5"):
            for label, o in [("fedmd", {"algorithm": "fedmd"})] + [knfu(d, b) for d, b in TUNE_CANDIDATES]:
                yield setting, label, seed, {**SETTINGS[setting], **o, "eval_split": "val"}


def plan_conflict(seeds, settings=None):
    for seed in seeds:
        for setting in settings or ("lp2",):
            for label, o in variants(["local", "fedmd", "knfu-profile", "knfu-default", "oracle"]):
                yield setting, label, seed, {**SETTINGS[setting], **o}


def plan_liars(seeds, settings=None):
    for seed in seeds:
        for setting in settings or ("dir0.5",):
            for label, o in variants(["fedmd", "knfu-profile", "knfu-near", "knfu-default"]):
                yield setting, f"{label}-k0", seed, {**SETTINGS[setting], **o}
                for kind in LIAR_RUNS:
                    yield setting, f"{label}-{kind}-k{LIARS}", seed, {
                        **SETTINGS[setting], **o, "fault.kind": kind.split("-")[0], "fault.num_malicious": LIARS,
                        **LIAR_RUNS[kind]}


def plan_grid(seeds, settings=None):
    for seed in seeds:
        for setting in settings or ("dir0.1", "dir0.5", "dir5"):
            for label, o in variants(["local", "fedmd", "knfu-default"]):
                yield setting, label, seed, {**SETTINGS[setting], **o}


EDGE_SETTINGS = {
    # issue 19: the edges of KnFu's promise
    "collude": {"fault.kind": "swap", "fault.swap": "3:8", "fault.collude": True, "fault.num_malicious": 3},
    "swap1": {"fault.kind": "swap", "fault.swap": "3:8", "fault.num_malicious": 1},
    # the same settings on the validation split, where the rule was chosen
    "lp3-val": {"conflict.kind": "label_permutation", "conflict.groups": 3, "partition": "iid", "eval_split": "val"},
    "dir0.1-val": {"partition": "dirichlet", "alpha": 0.1, "eval_split": "val"},
    # honest accuracy on the swapped class: the collusion setting and the same run without attack, models kept
    "collude-m": {"fault.kind": "swap", "fault.swap": "3:8", "fault.collude": True, "fault.num_malicious": 3,
                  "save_models": True},
    "clean-m": {"save_models": True},
    # session 16: the same for a single swapper, whose round-1 weight is not cut (docs/robustness.md §6b)
    "swap1-m": {"fault.kind": "swap", "fault.swap": "3:8", "fault.num_malicious": 1, "save_models": True},
    # strong and mild label skew on Fashion-MNIST (experiments/configs/fashion.toml: 10 rounds, M = 1000)
    "fashion-dir0.1": {"partition": "dirichlet", "alpha": 0.1},
    "fashion-dir0.5": {"partition": "dirichlet", "alpha": 0.5},
    # session 12: where knfu.self_share was weighed (validation split)
    "fashion-dir0.1-val": {"partition": "dirichlet", "alpha": 0.1, "eval_split": "val"},
    # session 15: colluders that blur the shared answer with their own noise (to escape the one vote)
    **{f"collude-n{int(e * 100):02d}": {"fault.kind": "swap", "fault.swap": "3:8", "fault.collude": True,
                                        "fault.num_malicious": 3, "fault.collude_noise": e} for e in (0.05, 0.2, 0.5)},
    # session 15: groups smaller than three (4 groups: 3/3/2/2 clients; 5 groups of 2: one in-group peer each)
    "lp4": {"conflict.kind": "label_permutation", "conflict.groups": 4, "partition": "iid"},
    "lp5": {"conflict.kind": "label_permutation", "conflict.groups": 5, "partition": "iid"},
}
SETTINGS.update(EDGE_SETTINGS)
EDGE_VARIANTS = {"knfu-class": {"algorithm": "knfu", "knfu.distance": "class_hellinger", "knfu.beta": 1.0,
                                "knfu.scale": "median"},
                 # the issue-13 default (plus one vote for near-duplicates, which it never meets in honest runs)
                 "knfu-sample": {"algorithm": "knfu", "knfu.distance": "sample_hellinger", "knfu.beta": 1.0,
                                 "knfu.scale": "median"},
                 "knfu-sample-novote": {"algorithm": "knfu", "knfu.distance": "sample_hellinger", "knfu.beta": 1.0,
                                        "knfu.scale": "median", "knfu.one_vote": False},
                 "knfu-near7": {"algorithm": "knfu", "knfu.distance": "class_hellinger", "knfu.beta": 1.0,
                                "knfu.scale": "nearest", "knfu.guard": 0.7, "knfu.agreement": False},
                 "knfu-near": {"algorithm": "knfu", "knfu.distance": "class_hellinger", "knfu.beta": 1.0,
                               "knfu.scale": "nearest", "knfu.agreement": False},
                 # + each peer weighed by the evidence that it agrees beyond chance (the default since)
                 "knfu-agree": {"algorithm": "knfu", "knfu.distance": "class_hellinger", "knfu.beta": 1.0,
                                "knfu.scale": "nearest", "knfu.agreement": True},
                 # the same with a lower neighbour threshold: does the agreement factor make tau's cut redundant?
                 "knfu-agree-t0": {"algorithm": "knfu", "knfu.distance": "class_hellinger", "knfu.beta": 1.0,
                                   "knfu.scale": "nearest", "knfu.agreement": True, "knfu.tau": 0.0},
                 "knfu-agree-t05": {"algorithm": "knfu", "knfu.distance": "class_hellinger", "knfu.beta": 1.0,
                                    "knfu.scale": "nearest", "knfu.agreement": True, "knfu.tau": 0.05},
                 # issue 19, session 11: neighbours by agreement relative to the client's best peer
                 # (knfu.relative), with a milder beta (the distances no longer have to cut conflicting groups)
                 **{f"knfu-rel{int(rel * 100)}-b{beta:g}{'-med' if scale == 'median' else ''}":
                    {"algorithm": "knfu", "knfu.distance": "class_hellinger", "knfu.beta": beta, "knfu.scale": scale,
                     "knfu.agreement": True, "knfu.relative": rel}
                    for rel in (0.4, 0.5) for beta in (0.1, 0.25, 0.5) for scale in ("nearest", "median")},
                 # session 12: the default plus a share of the client's own answer in its targets (knfu.self_share)
                 **{f"knfu-rel50-b0.25-ss{int(share * 100)}":
                    {"algorithm": "knfu", "knfu.distance": "class_hellinger", "knfu.beta": 0.25, "knfu.scale": "nearest",
                     "knfu.agreement": True, "knfu.relative": 0.5, "knfu.self_share": share}
                    for share in (0.1, 0.25)},
                 "fedmd": {"algorithm": "fedmd"}, "oracle": {"algorithm": "oracle"}, "local": {"algorithm": "local"},
                 "oracle-mc1": {"algorithm": "oracle", "server.min_contributors": 1}}
# session 15: the default rule without the privacy floor (a target may be one peer's upload)
EDGE_VARIANTS["knfu-default-mc1"] = {**EDGE_VARIANTS["knfu-rel50-b0.25-ss10"], "server.min_contributors": 1}
# every rule before session 12 pinned to no self share (the default since), and every rule before session 17 to
# no echo ramp (server.echo_ramp, the default since), so their ledger rows stay their own
for _rule in EDGE_VARIANTS.values():
    if _rule["algorithm"] == "knfu":
        _rule.setdefault("knfu.self_share", 0.0)
        _rule.setdefault("server.echo_ramp", 0.0)
# session 17: today's default rule with the server's echo ramp (0.5, the default, chosen among these on the
# validation split: docs/robustness.md §6c)
for _ramp in (0.25, 0.5, 0.75, 1.0):
    EDGE_VARIANTS[f"knfu-rel50-b0.25-ss10-er{int(_ramp * 100)}"] = {**EDGE_VARIANTS["knfu-rel50-b0.25-ss10"],
                                                                   "server.echo_ramp": _ramp}


def plan_edges(seeds, settings=None):
    """Per-class agreement with one vote for near-duplicates (knfu-class) against the issue-13 rule
    (knfu-sample), FedMD and the oracle: 3 and 2 conflict groups, colluding swappers, one swapper, skew."""
    which = {"lp3": ("knfu-class", "oracle", "knfu-near", "knfu-sample", "fedmd", "knfu-agree", "knfu-agree-t0", "knfu-agree-t05"),
             "lp2": ("knfu-class", "oracle", "knfu-near", "fedmd", "knfu-sample", "knfu-agree", "knfu-agree-t0", "knfu-agree-t05"),
             "collude": ("knfu-class", "fedmd", "knfu-sample-novote", "knfu-near", "knfu-sample", "knfu-agree", "knfu-agree-t0", "knfu-agree-t05"),
             "swap1": ("knfu-class", "knfu-sample", "knfu-sample-novote", "knfu-near", "knfu-agree"),
             "dir0.1": ("knfu-class", "knfu-near", "fedmd", "knfu-sample", "knfu-agree"),
             "dir0.5": ("knfu-class", "knfu-near", "fedmd", "knfu-sample", "knfu-agree"),
             "lp3-val": ("knfu-near", "knfu-sample", "knfu-class", "knfu-near7", "knfu-agree", "knfu-agree-t0", "knfu-agree-t05"),
             "dir0.1-val": ("knfu-near", "knfu-sample", "knfu-class", "knfu-near7", "knfu-agree", "knfu-agree-t0", "knfu-agree-t05"),
             "collude-m": ("knfu-agree", "fedmd"),
             "clean-m": ("knfu-agree", "fedmd"),
             "swap1-m": ("fedmd",),
             "fashion-dir0.1": ("knfu-near", "fedmd", "knfu-agree", "knfu-agree-t0", "knfu-agree-t05"),
             "fashion-dir0.5": ("knfu-near", "fedmd", "knfu-agree", "knfu-agree-t0", "knfu-agree-t05"),
             "fashion-dir0.1-val": ("fedmd", "knfu-rel50-b0.25-ss25"),
             **{f"collude-n{n}": ("fedmd",) for n in ("05", "20", "50")},
             "lp4": ("oracle", "fedmd", "local", "knfu-default-mc1", "oracle-mc1"),
             "lp5": ("oracle", "fedmd", "local", "knfu-default-mc1", "oracle-mc1")}
    for setting in settings or which:
        for seed in seeds:
            # the relative-cut candidates where the rule was chosen (digits), the chosen one everywhere, and
            # the self share of session 12 (an opt-in; docs/results.md) next to it
            candidates = ([v for v in EDGE_VARIANTS if v.startswith("knfu-rel") and "-ss" not in v]
                          if setting in ("lp3-val", "dir0.1-val") else ["knfu-rel50-b0.25"])
            candidates += ["knfu-rel50-b0.25-ss10", "knfu-rel50-b0.25-ss10-er50"]
            if setting.endswith("-val"):  # where the echo ramp was chosen
                candidates += ["knfu-rel50-b0.25-ss10-er25", "knfu-rel50-b0.25-ss10-er75", "knfu-rel50-b0.25-ss10-er100"]
            for label in (*which[setting], *candidates):
                yield setting, label, seed, {**SETTINGS[setting], **EDGE_VARIANTS[label]}


PLANS = {"tune": plan_tune, "conflict": plan_conflict, "liars": plan_liars, "grid": plan_grid, "edges": plan_edges}


# ---------------------------------------------------------------- measurements

def records_of(out: Path) -> list[dict]:
    return read_rounds(out)


def weight_rounds(records: list[dict]) -> list[np.ndarray]:
    return [w for w in (weight_matrix(r, N) for r in records) if w is not None]


def group_weights(records: list[dict], groups: np.ndarray) -> dict:
    """Share of each client's weight that goes to clients of another conflict group."""
    same = groups[:, None] == groups[None, :]
    per_round = [float((w * ~same).sum(axis=1).mean()) for w in weight_rounds(records)]
    if not per_round:
        return {}
    return {"cross_group_weight_last": per_round[-1], "cross_group_weight_mean": float(np.mean(per_round)),
            "cross_group_weight_per_round": per_round}


def liar_weights(records: list[dict], liars: list[int]) -> dict:
    """Weight an honest client puts on one liar / weight it puts on one honest peer (self excluded).

    Ratio of means over all (honest n, liar l) and (honest n, honest m != n) pairs; also the total weight
    honest clients put on the liars.
    """
    honest = [i for i in range(N) if i not in liars]
    ratios, totals = [], []
    for w in weight_rounds(records):
        on_liar = w[np.ix_(honest, liars)].mean()
        peer = w[np.ix_(honest, honest)]
        on_peer = (peer.sum() - np.trace(peer)) / (len(honest) * (len(honest) - 1))
        ratios.append(float(on_liar / on_peer) if on_peer > 0 else float("inf"))
        totals.append(float(w[np.ix_(honest, liars)].sum(axis=1).mean()))
    if not ratios:
        return {}
    return {"liar_ratio_last": ratios[-1], "liar_ratio_max": float(max(ratios)),
            "liar_ratio_per_round": ratios, "liar_weight_last": totals[-1], "liar_weight_mean": float(np.mean(totals))}


def measure(out: Path, overrides: dict, summary: dict) -> dict:
    records = records_of(out)
    last = records[-1]
    row = {"alma": summary["alma"], "global_acc": summary["global_acc"],
           "alma_per_round": summary.get("alma_per_round"),
           "per_client_local_acc": last["per_client_local_acc"],
           "neighbour_counts_last": last.get("neighbour_counts")}
    kind = overrides.get("conflict.kind", "none")
    if kind != "none":
        row.update(group_weights(records, conflict_groups(N, int(overrides.get("conflict.groups", 2)))))
    k = int(overrides.get("fault.num_malicious", 0))
    liars = list(range(N - k, N)) if k else list(range(N - LIARS, N))  # k = 0: the partitions that lie at k = 3
    honest = [i for i in range(N) if i not in liars]
    local, glob = last["per_client_local_acc"], last["per_client_global_acc"]
    row["alma_honest"] = float(np.mean([local[str(i)] for i in honest]))
    row["global_honest"] = float(np.mean([glob[str(i)] for i in honest]))
    if k:
        row.update(liar_weights(records, liars))
        w = weight_rounds(records)
        if w:  # the largest share of one honest client's targets that comes from the liars (last round)
            row["liar_share_max_last"] = float(w[-1][np.ix_(honest, liars)].sum(axis=1).max())
    row["without_targets_last"] = len(last.get("without_targets", {}))
    row.update(repetition_range(records, honest, liars if k else []))
    if overrides.get("save_models"):
        row["honest_class_acc"] = honest_class_accuracy(out, honest, SWAP_SOURCE)
    return row


def repetition_range(records: list[dict], honest: list[int], liars: list[int]) -> dict:
    """Each round's smallest distance to the sent targets over the median (the server's ``repetition``), among
    honest clients and among liars (rounds 2 on; session 17: where the echo ramp would touch honest clients)."""
    out: dict = {"repetition_honest_min": [], "repetition_liars": []}
    for r in records:
        ratios = {int(c): v for c, v in r.get("repetition", {}).items()}
        if not ratios:
            continue
        out["repetition_honest_min"].append(min((ratios[c] for c in honest if c in ratios), default=None))
        out["repetition_liars"].append([ratios.get(c) for c in liars])
    return out if out["repetition_honest_min"] else {}


SWAP_SOURCE = 3  # the class the swap settings move (3 -> 8)


def honest_class_accuracy(out: Path, honest: list[int], cls: int) -> dict:
    """Mean and per-client accuracy of the honest clients' final models on class ``cls`` of the global test set."""
    from fedkd.audit.artifacts import load_run
    from fedkd.training import predict_logits

    art = load_run(out, clients=honest)
    fed = art.federation
    mask = np.asarray(fed.global_test_y) == cls
    x = np.asarray(fed.global_test_x)[mask]
    per = {str(c): float((predict_logits(art.models[c][0], x, device="cpu").argmax(axis=1) == cls).mean())
           for c in honest}
    return {"class": cls, "images": int(mask.sum()), "mean": float(np.mean(list(per.values()))), "per_client": per}


# ---------------------------------------------------------------- running

def ledger_path(sub: str) -> Path:
    return RESULTS / f"knfu_{sub}.jsonl"


def load(sub: str) -> list[dict]:
    path = ledger_path(sub)
    if not path.exists():
        return []
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def run_plan(sub: str, seeds: list[int], settings: list[str] | None, rounds: int | None,
             dry: bool = False, only: set[str] | None = None) -> None:
    from fedkd.cli.simulation import run_simulation

    RESULTS.mkdir(parents=True, exist_ok=True)
    done = {r["name"] for r in load(sub)}
    runs = list(PLANS[sub](seeds, settings))
    for i, (setting, label, seed, overrides) in enumerate(runs, 1):
        overrides = {**PROTOCOL, **overrides, "seed": seed}
        base = None
        if setting.startswith("fashion"):
            base = FASHION
            overrides.pop("dataset")
        name = f"{setting}-{label}-s{seed}"
        if only and label not in only:
            continue
        if rounds:
            overrides["rounds"] = rounds
            name += f"-r{rounds}"
        if name in done:
            continue
        if dry:
            print(name, overrides)
            continue
        cfg = load_config(base, [f"{k}={v}" for k, v in overrides.items()])
        out = RUNS / sub / name
        if out.exists():  # a run interrupted before it reached the ledger
            shutil.rmtree(out)
        started = time.perf_counter()
        summary = run_simulation(cfg, out, progress=False)
        seconds = time.perf_counter() - started
        row = {"name": name, "setting": setting, "variant": label, "seed": seed,
               "config": None if base is None else str(base.relative_to(ROOT.parent)),
               "overrides": overrides, "rounds": cfg["rounds"], "seconds": seconds,
               **measure(out, overrides, summary)}
        with open(ledger_path(sub), "a") as fh:
            fh.write(json.dumps(row) + "\n")
        done.add(name)  # a plan that names a run twice runs it once
        print(f"[{i}/{len(runs)}] {name}: ALMA {row['alma']:.4f} global {row['global_acc']:.4f} "
              f"({seconds:.0f} s)", flush=True)


# ---------------------------------------------------------------- tables

def pm(values, scale=100.0, digits=1) -> str:
    v = np.asarray([x for x in values if x is not None], dtype=float) * scale
    if v.size == 0:
        return "–"
    if v.size == 1:
        return f"{v[0]:.{digits}f}"
    return f"{v.mean():.{digits}f} ± {(v.max() - v.min()) / 2:.{digits}f}"


def seeds_of(rows) -> str:
    return ",".join(str(s) for s in sorted({r["seed"] for r in rows}))


def by(rows, *fields):
    groups = defaultdict(list)
    for r in rows:
        groups[tuple(r[f] for f in fields)].append(r)
    return groups


def table_tune() -> str:
    rows = load("tune")
    if not rows:
        return "(knfu_tune: no runs)"
    g = by(rows, "setting", "variant")
    settings = [s for s in ("lp2", "dir0.5") if any(k[0] == s for k in g)]
    labels = ["fedmd"] + [knfu(d, b)[0] for d, b in TUNE_CANDIDATES]
    head = "| rule | " + " | ".join(f"{s} ALMA % (val) | {s} global % (val)" for s in settings) + \
           " | mean ALMA over settings | seeds |"
    lines = [head, "|" + "---|" * (2 + 2 * len(settings) + 1)]
    for label in labels:
        cells, means, seeds = [], [], set()
        for s in settings:
            rs = g.get((s, label), [])
            seeds |= {r["seed"] for r in rs}
            cells += [pm([r["alma"] for r in rs]), pm([r["global_acc"] for r in rs])]
            means.append(np.mean([r["alma"] for r in rs]) if rs else np.nan)
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {100 * np.mean(means):.1f} | "
                     f"{','.join(map(str, sorted(seeds)))} |")
    return "\n".join(lines) + footer(rows)


def footer(rows) -> str:
    return f"\n\n{len(rows)} runs, {sum(r['seconds'] for r in rows) / 60:.1f} min of wall time in all."


def table_conflict() -> str:
    rows = load("conflict")
    if not rows:
        return "(knfu_conflict: no runs)"
    lines = ["| setting | rounds | rule | ALMA % | global % | weight across groups (last round) | seeds |",
             "|---|---|---|---|---|---|---|"]
    g = by(rows, "setting", "rounds", "variant")
    for (setting, rounds) in sorted({(k[0], k[1]) for k in g}, key=lambda k: (k[0].startswith("fashion"), k)):
        for label in ["local", "fedmd", "knfu-profile_kl-b10"] + sorted(
                {k[2] for k in g if k[2].startswith("knfu") and k[2] != "knfu-profile_kl-b10"}) + ["oracle"]:
            rs = g.get((setting, rounds, label))
            if not rs:
                continue
            cross = pm([r.get("cross_group_weight_last") for r in rs], 1.0, 2) if label not in ("local",) else "–"
            lines.append(f"| {setting} | {rounds} | {label} | {pm([r['alma'] for r in rs])} | "
                         f"{pm([r['global_acc'] for r in rs])} | {cross} | {seeds_of(rs)} |")
        # differences, paired by seed
        lines += diff_lines(g, setting, rounds)
    return "\n".join(lines) + footer(rows)


def diff_lines(g, setting, rounds) -> list[str]:
    out = []
    knfus = sorted(k[2] for k in g if k[:2] == (setting, rounds) and k[2].startswith("knfu"))
    for label in knfus:
        rs = {r["seed"]: r for r in g[(setting, rounds, label)]}
        for ref in ("fedmd",) if "profile" in label else ("fedmd", "local", "oracle"):
            refs = {r["seed"]: r for r in g.get((setting, rounds, ref), [])}
            common = sorted(set(rs) & set(refs))
            if not common:
                continue
            d = [rs[s]["alma"] - refs[s]["alma"] for s in common]
            sign = "" if ref != "oracle" else " (negative: below oracle)"
            out.append(f"| {setting} | {rounds} | {label} − {ref}{sign} | {pm(d)} | "
                       f"{pm([rs[s]['global_acc'] - refs[s]['global_acc'] for s in common])} | | "
                       f"{','.join(map(str, common))} |")
    return out


def table_liars() -> str:
    rows = load("liars")
    if not rows:
        return "(knfu_liars: no runs)"
    lines = ["| rule | attack (3 of 10) | honest ALMA % | Δ honest ALMA vs no liars (paired) | honest global % | "
             "liar / honest-peer weight, last round | same, worst round | total weight on liars (last) | seeds |",
             "|---|---|---|---|---|---|---|---|---|"]
    g = by(rows, "setting", "variant")
    for setting in sorted({k[0] for k in g}):
        for base in ["fedmd", "knfu-profile_kl-b10"] + sorted(
                {k[1].rsplit("-k", 1)[0] for k in g if k[1].startswith("knfu") and k[1].endswith("-k0")}
                - {"knfu-profile_kl-b10"}):
            clean = {r["seed"]: r for r in g.get((setting, f"{base}-k0"), [])}
            if clean:
                rs = list(clean.values())
                lines.append(f"| {base} | none | {pm([r['alma_honest'] for r in rs])} | – | "
                             f"{pm([r['global_honest'] for r in rs])} | – | – | – | {seeds_of(rs)} |")
            for kind in LIAR_RUNS:
                rs = g.get((setting, f"{base}-{kind}-k{LIARS}"))
                if not rs:
                    continue
                delta = [r["alma_honest"] - clean[r["seed"]]["alma_honest"] for r in rs if r["seed"] in clean]
                lines.append(
                    f"| {base} | {kind} | {pm([r['alma_honest'] for r in rs])} | {pm(delta) if delta else '–'} | "
                    f"{pm([r['global_honest'] for r in rs])} | {pm([r.get('liar_ratio_last') for r in rs], 100.0)} % | "
                    f"{pm([r.get('liar_ratio_max') for r in rs], 100.0)} % | "
                    f"{pm([r.get('liar_weight_last') for r in rs], 1.0, 3)} | {seeds_of(rs)} |")
    return "\n".join(lines) + footer(rows)


def table_grid() -> str:
    rows = load("grid")
    if not rows:
        return "(knfu_grid: no runs)"
    lines = ["| α | rule | ALMA % | global % | seeds |", "|---|---|---|---|---|"]
    g = by(rows, "setting", "variant")
    order = {"dir0.1": 0, "dir0.5": 1, "dir5": 2}
    for setting in sorted({k[0] for k in g}, key=lambda s: order.get(s, 9)):
        alpha = SETTINGS[setting]["alpha"]
        labels = ["local", "fedmd"] + sorted(k[1] for k in g if k[0] == setting and k[1].startswith("knfu"))
        for label in labels:
            rs = g.get((setting, label))
            if rs:
                lines.append(f"| {alpha:g} | {label} | {pm([r['alma'] for r in rs])} | "
                             f"{pm([r['global_acc'] for r in rs])} | {seeds_of(rs)} |")
        for label in labels[2:]:
            for ref in ("fedmd", "local"):
                a = {r["seed"]: r for r in g[(setting, label)]}
                b = {r["seed"]: r for r in g.get((setting, ref), [])}
                common = sorted(set(a) & set(b))
                if common:
                    lines.append(f"| {alpha:g} | {label} − {ref} (paired) | "
                                 f"{pm([a[s]['alma'] - b[s]['alma'] for s in common])} | "
                                 f"{pm([a[s]['global_acc'] - b[s]['global_acc'] for s in common])} | "
                                 f"{','.join(map(str, common))} |")
    return "\n".join(lines) + footer(rows)


# (rule, reference) pairs of the edges table: each rule against the oracle, FedMD and the issue-13 rule; the
# default without the privacy floor against the oracle without it
EDGE_PAIRS = [*((mine, ref) for mine in ("knfu-near", "knfu-class", "knfu-agree", "knfu-rel50-b0.25",
                                         "knfu-rel50-b0.25-ss10")
                for ref in ("oracle", "fedmd", "knfu-sample")),
              ("knfu-default-mc1", "oracle-mc1")]


def paired_gap(setting: str, mine: str, ref: str, base: dict, other: dict, common: list[int]) -> str:
    per_seed = ", ".join(f"{100 * (base[x]['alma'] - other[x]['alma']):+.1f}" for x in common)
    per_seed_global = ", ".join(f"{100 * (base[x]['global_acc'] - other[x]['global_acc']):+.1f}" for x in common)
    return (f"| {setting} | {mine} − {ref} | {pm([base[x]['alma'] - other[x]['alma'] for x in common])} "
            f"({per_seed}) | {pm([base[x]['global_acc'] - other[x]['global_acc'] for x in common])} "
            f"({per_seed_global}) | {','.join(map(str, common))} |")


def table_edges() -> str:
    """Issue 19: one row per (setting, rule), then the paired gaps knfu-class - oracle / - fedmd."""
    rows = load("edges")
    if not rows:
        return "(no runs yet: python experiments/knfu_study.py edges --seeds 0,1,2)"
    lines = ["| setting | rule | ALMA % | global acc % | liars' max share of an honest client's targets % | "
             "liar / honest-peer weight | clients without targets (last round) | seeds |",
             "|---|---|---|---|---|---|---|---|"]
    groups = by(rows, "setting", "variant")
    for (setting, variant), g in sorted(groups.items()):
        share = [r.get("liar_share_max_last") for r in g]
        ratio = [r.get("liar_ratio_last") for r in g]
        lines.append(f"| {setting} | {variant} | {pm([r['alma'] for r in g])} | {pm([r['global_acc'] for r in g])} | "
                     f"{pm(share) if any(x is not None for x in share) else '–'} | "
                     f"{pm(ratio, scale=1.0, digits=3) if any(x is not None for x in ratio) else '–'} | "
                     f"{pm([r.get('without_targets_last', 0) for r in g], scale=1.0)} | {seeds_of(g)} |")
    lines += ["", "| setting | paired gap | ALMA points | global acc points | seeds |", "|---|---|---|---|---|"]
    for setting in sorted({r["setting"] for r in rows}):
        for mine, ref in EDGE_PAIRS:
            base = {r["seed"]: r for r in rows if r["setting"] == setting and r["variant"] == mine}
            other = {r["seed"]: r for r in rows if r["setting"] == setting and r["variant"] == ref}
            common = sorted(set(base) & set(other))
            if common:
                lines.append(paired_gap(setting, mine, ref, base, other, common))
    return "\n".join(lines) + footer(rows)


def print_tables(which: list[str]) -> None:
    fns = {"tune": table_tune, "conflict": table_conflict, "liars": table_liars, "grid": table_grid,
           "edges": table_edges}
    for name in which or list(fns):
        print(f"### knfu_{name}\n")
        print(fns[name]())
        print()


# ---------------------------------------------------------------- heat-map

def heatmap(out_png: Path, setting: str = "lp2", seed: int = 0) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = {r["variant"]: r for r in load("conflict") if r["setting"] == setting and r["seed"] == seed
            and r["rounds"] == 5}
    labels = [v for v in ["knfu-profile_kl-b10"] + sorted(v for v in rows if v.startswith("knfu-sample"))
              + ["fedmd", "oracle"] if v in rows]
    labels = [v for v in labels if v != "fedmd"]
    fig, axes = plt.subplots(1, len(labels), figsize=(1.9 * len(labels) + 0.6, 2.2), dpi=100,
                             layout="constrained")
    axes = np.atleast_1d(axes)
    for ax, label in zip(axes, labels):
        w = weight_rounds(records_of(RUNS / "conflict" / rows[label]["name"]))[-1]
        im = ax.imshow(w, vmin=0, vmax=max(0.3, float(w.max())), cmap="viridis")
        ax.axhline(4.5, color="w", lw=0.6)
        ax.axvline(4.5, color="w", lw=0.6)
        ax.set_title(f"{label.replace('knfu-', 'KnFu ')}\nALMA {100 * rows[label]['alma']:.1f}", fontsize=7)
        ax.set_xticks(range(0, N, 3))
        ax.set_yticks(range(0, N, 3))
        ax.tick_params(labelsize=6)
    axes[0].set_ylabel("client n (row: its weights)", fontsize=6)
    for ax in axes:
        ax.set_xlabel("peer m (clients 5-9: permuted labels)", fontsize=5)
    fig.colorbar(im, ax=list(axes), shrink=0.7).ax.tick_params(labelsize=6)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=100)
    print(f"wrote {out_png} ({out_png.stat().st_size / 1024:.0f} kB) from {[rows[v]['name'] for v in labels]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["tune", "conflict", "liars", "grid", "edges", "tables", "heatmap"])
    parser.add_argument("--seeds", default="0", help="comma-separated seeds (default 0)")
    parser.add_argument("--setting", default="", help="comma-separated settings: " + ", ".join(SETTINGS))
    parser.add_argument("--rounds", type=int, default=0, help="override the rounds of new runs (0 = config's)")
    parser.add_argument("--only", default="", help="tables: comma-separated ledgers to print; runs: "
                        "comma-separated rule labels to run (e.g. fedmd,knfu-sample_kl-b3)")
    parser.add_argument("--dry-run", action="store_true", help="list the runs still to do")
    args = parser.parse_args()
    if args.command == "tables":
        print_tables([x for x in args.only.split(",") if x])
    elif args.command == "heatmap":
        heatmap(ROOT / "runs" / "knfu_conflict_weights.png")
    else:
        seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
        settings = [s for s in args.setting.split(",") if s] or None
        only = {x for x in args.only.split(",") if x} or None
        run_plan(args.command, seeds, settings, args.rounds or None, args.dry_run, only)
        print_tables([args.command])


if __name__ == "__main__":
    main()
