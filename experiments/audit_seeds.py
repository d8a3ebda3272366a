"""Audit numbers over seeds, with their spread: digits and Fashion-MNIST, plain and swing.

For every (dataset, setting, seed) this runs, exactly as a user would,

    fedkd simulate <settings> --set seed=S --out experiments/runs/audit_seeds/<name>-s<S> --quiet
    fedkd audit experiments/runs/audit_seeds/<name>-s<S> --quick --quiet

and tabulates mean ± standard deviation over seeds of ALMA, the worst client's RMIA AUC and TPR at
0.1 % / 1 % FPR, the server's soft-label inversion top-1, LOKT top-1 and the one-run empirical ε
(with the accounted ε beside it). Results go to experiments/results/audit_seeds.json and a Markdown
table on stdout (pasted into docs/audit.md). Finished steps are not redone.

    python experiments/audit_seeds.py                 # every setting, seeds 0 1 2
    python experiments/audit_seeds.py digits --seeds 0 1 2
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
RUNS = ROOT / "experiments" / "runs" / "audit_seeds"
RESULTS = ROOT / "experiments" / "results" / "audit_seeds.json"
FEDKD = [sys.executable, "-m", "fedkd.cli"]
ENV = dict(os.environ, FLWR_TELEMETRY_ENABLED="0", FLWR_DISABLE_UPDATE_CHECK="1",
           FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION="1", RAY_USAGE_STATS_ENABLED="0", OMP_NUM_THREADS="1")
CANARIES = ["--set", "canaries.enabled=true"]
SWING = ["--set", "privacy.swing=true"]
FASHION = ["--config", "experiments/configs/fashion.toml", "--set", "rounds=5", "--set", "save_models=true"]
SETTINGS = {
    "digits-plain": CANARIES,
    "digits-swing": CANARIES + SWING,
    "fashion-plain": FASHION + CANARIES,
    "fashion-swing": FASHION + CANARIES + SWING,
}


def row(audit: dict) -> dict:
    """The numbers of one audit.json that the table reports."""
    per = audit["membership"]["per_client"]
    rmia = {c: r["rmia"] for c, r in per.items() if "rmia" in r}
    worst = max(rmia, key=lambda c: rmia[c]["auc"])
    emp, sli, inv = audit["empirical_epsilon"], audit["soft_label_inversion"], audit.get("inversion") or {}
    return {
        "alma": audit["run"]["alma"], "rmia_auc": rmia[worst]["auc"], "rmia_client": worst,
        "rmia_tpr_0.1": rmia[worst]["tpr_at_0.1fpr"], "rmia_tpr_1": rmia[worst]["tpr_at_1fpr"],
        "rmia_n_members": rmia[worst]["n_members"], "rmia_n_nonmembers": rmia[worst]["n_nonmembers"],
        "sli_top1": sli["attack_acc_top1"], "sli_plain": sli["variants"]["plain"]["attack_acc_top1"],
        "sli_swing": sli["variants"]["swing"]["attack_acc_top1"], "lokt_top1": inv.get("attack_acc_top1"),
        "eps_lower": emp["lower_bound"], "eps_accounted": emp["accounted"],
        "eps_accounted_training_set": emp["accounted_training_set"], "eps_canaries": emp["canaries"],
        "eps_guesses": emp["guesses"], "eps_correct": emp["correct"],
        "eps_plain": emp["variants"]["plain"]["lower_bound"], "eps_swing": emp["variants"]["swing"]["lower_bound"],
        "eps_swing_accounted": emp["variants"]["swing"]["accounted"],
        "rmia_auc_mean": audit["membership"]["worst_client"]["rmia"]["mean"],
        "sli_chance": sli["chance"], "lokt_floor": inv.get("random_latent_acc_top1"),
        "lokt_chance": inv.get("chance"),
    }


def run_one(name: str, seed: int) -> dict:
    out = RUNS / f"{name}-s{seed}"
    rel = str(out.relative_to(ROOT))
    if not (out / "summary.json").is_file():
        subprocess.run(FEDKD + ["simulate", *SETTINGS[name], "--set", f"seed={seed}", "--out", rel, "--quiet"],
                       cwd=ROOT, env=ENV, check=True)
    if not (out / "audit" / "audit.json").is_file():
        subprocess.run(FEDKD + ["audit", rel, "--quick", "--quiet"], cwd=ROOT, env=ENV, check=True)
    return row(json.loads((out / "audit" / "audit.json").read_text()))


def _ms(values) -> str:
    v = [x for x in values if x is not None]
    if not v:
        return "–"
    return f"{np.mean(v):.3f} ± {np.std(v, ddof=1):.3f}" if len(v) > 1 else f"{v[0]:.3f}"


def markdown(results: dict) -> str:
    lines = ["| setting | seeds | ALMA | RMIA AUC (worst client) | RMIA AUC (mean over clients) | RMIA TPR@0.1% "
             "| RMIA TPR@1% | members / non-members | soft-label inversion top-1 (chance 0.10) | LOKT top-1 "
             "| LOKT random-latent floor | empirical ε (95 %) | accounted ε |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, by_seed in results.items():
        rows = list(by_seed.values())
        col = lambda k: [r.get(k) for r in rows]  # noqa: E731
        acc = col("eps_accounted")
        lines.append(f"| {name} | {len(rows)} | {_ms(col('alma'))} | {_ms(col('rmia_auc'))} | "
                     f"{_ms(col('rmia_auc_mean'))} | {_ms(col('rmia_tpr_0.1'))} | "
                     f"{_ms(col('rmia_tpr_1'))} | {min(col('rmia_n_members'))}–{max(col('rmia_n_members'))} / "
                     f"{min(col('rmia_n_nonmembers'))}–{max(col('rmia_n_nonmembers'))} | {_ms(col('sli_top1'))} | "
                     f"{_ms(col('lokt_top1'))} | {_ms(col('lokt_floor'))} | {_ms(col('eps_lower'))} | "
                     f"{'∞' if all(a is None for a in acc) else _ms(acc)} |")
    lines += ["", "Same models, plain vs swing uploads (the audit attacks both; σ of the run's swing settings):", "",
              "| setting | seeds | soft-label inversion top-1: plain uploads | swing uploads | "
              "empirical ε: plain uploads | swing uploads | accounted ε of those swing uploads (per row) |",
              "|---|---|---|---|---|---|---|"]
    for name, by_seed in results.items():
        rows = list(by_seed.values())
        col = lambda k: [r.get(k) for r in rows]  # noqa: E731
        lines.append(f"| {name} | {len(rows)} | {_ms(col('sli_plain'))} | {_ms(col('sli_swing'))} | "
                     f"{_ms(col('eps_plain'))} | {_ms(col('eps_swing'))} | {_ms(col('eps_swing_accounted'))} |")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("prefix", nargs="*")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--table", action="store_true", help="only print the table of the results already measured")
    args = p.parse_args(argv)
    wanted = [n for n in SETTINGS if not args.prefix or any(n.startswith(a) for a in args.prefix)]
    if args.table:
        wanted = []
    for name in wanted:
        for seed in args.seeds:
            r = run_one(name, seed)
            done = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
            done.setdefault(name, {})[str(seed)] = r
            RESULTS.parent.mkdir(parents=True, exist_ok=True)
            RESULTS.write_text(json.dumps(done, indent=2, sort_keys=True) + "\n")
    print(markdown(json.loads(RESULTS.read_text())))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
