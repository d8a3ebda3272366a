"""Measure the privacy audit for docs/audit.md: digits and Fashion-MNIST, with and without swing.

For each setting this runs the two commands the doc lists, exactly as a user would:

    fedkd simulate <run settings> --out experiments/runs/audit/<name> --quiet
    fedkd audit experiments/runs/audit/<name> <audit options> --quiet

then tabulates attack accuracy, AUC, CPU time and queries from each ``audit.json`` into
``experiments/results/audit.json`` and a Markdown table on stdout (pasted into docs/audit.md).
A finished step is not redone (delete its folder to rerun it), so an interrupted script resumes.

    python experiments/audit.py            # all four settings (~25 min on 2 quiet cores)
    python experiments/audit.py digits     # only the settings whose name starts with "digits"
"""
from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RUNS = ROOT / "experiments" / "runs" / "audit"
RESULTS = ROOT / "experiments" / "results" / "audit.json"
FEDKD = [sys.executable, "-m", "fedkd.cli"]
ENV = dict(os.environ, FLWR_TELEMETRY_ENABLED="0", FLWR_DISABLE_UPDATE_CHECK="1",
           FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION="1", RAY_USAGE_STATS_ENABLED="0")

# Canaries are planted in every run so the report shows exposure per round; swing uses its default noise.
CANARIES = ["--set", "canaries.enabled=true"]
SWING = ["--set", "privacy.swing=true"]
FASHION = ["--config", "experiments/configs/fashion.toml", "--set", "rounds=5", "--set", "save_models=true"]
# Digits: the full LOKT budget (1500 GAN steps) on the two clients with the most never-held classes.
# Fashion-MNIST: 28x28 images make the convolutional GAN ~10x dearer per step, so one target and 600 steps.
DIGITS_AUDIT = ["--lokt-targets", "2"]
FASHION_AUDIT = ["--lokt-targets", "1", "--lokt-steps", "600"]

SETTINGS = {
    "digits-plain": (CANARIES, DIGITS_AUDIT),
    "digits-swing": (CANARIES + SWING, DIGITS_AUDIT),
    "fashion-plain": (FASHION + CANARIES, FASHION_AUDIT),
    "fashion-swing": (FASHION + CANARIES + SWING, FASHION_AUDIT),
}


def _run(cmd: list[str]) -> dict:
    """Run a command; return its wall and CPU seconds (CPU: the command and all its children)."""
    print("$ fedkd " + " ".join(cmd[len(FEDKD):]), flush=True)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(cmd, cwd=ROOT, env=ENV, check=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"wall_seconds": time.perf_counter() - start, "cpu_seconds": cpu}


def run_setting(name: str, costs: dict) -> dict:
    """Simulate and audit one setting (skipping finished steps, whose ``costs`` are kept)."""
    run_args, audit_args = SETTINGS[name]
    out = RUNS / name
    costs = dict(costs)
    if not (out / "summary.json").is_file():
        costs["simulate"] = _run(FEDKD + ["simulate", *run_args, "--out", str(out.relative_to(ROOT)), "--quiet"])
    if not (out / "audit" / "audit.json").is_file():
        costs["audit"] = _run(FEDKD + ["audit", str(out.relative_to(ROOT)), *audit_args, "--quiet"])
    audit = json.loads((out / "audit" / "audit.json").read_text())
    return {"name": name, "run_args": run_args, "audit_args": audit_args, "costs": costs, "row": table_row(audit)}


def table_row(audit: dict) -> dict:
    """The numbers docs/audit.md tabulates, from one audit.json."""
    mem, inv, run = audit["membership"], audit["inversion"] or {}, audit["run"]
    worst = mem["worst_client"]
    mean_auc = {a: w["mean"] for a, w in worst.items()}
    targets = inv.get("targets", {})
    knn = [t["federated"]["knn_distance"] for t in targets.values()]
    knn_pub = [t["federated"]["knn_distance_public"] for t in targets.values()]
    stages = audit["timing"]["stages"]
    lokt_cpu = [s["cpu_seconds"] for k, s in stages.items() if k.startswith("LOKT client") and "baseline" not in k]
    return {
        "dataset": run["dataset"], "swing": run["swing"], "epsilon": run["epsilon"], "alma": run["alma"],
        "global_acc": run["global_acc"],
        "mia_worst_auc": {a: w["auc"] for a, w in worst.items()},
        "mia_worst_client": {a: w["client"] for a, w in worst.items()},
        "mia_worst_tpr_at_1fpr": {a: w["tpr_at_1fpr"] for a, w in worst.items()},
        "mia_worst_tpr_at_0.1fpr": {a: w["tpr_at_0.1fpr"] for a, w in worst.items()},
        "mia_mean_auc": mean_auc,
        "n_members_min": min(c["n_members"] for c in mem["clients"].values()),
        "lokt_targets": sorted(targets),
        "lokt_acc_top1": inv.get("attack_acc_top1"), "lokt_acc_top5": inv.get("attack_acc_top5"),
        "lokt_never_held_top1": inv.get("cross_client_attack_acc_top1"),
        "lokt_local_only_top1": inv.get("local_only_acc_top1"),
        "lokt_local_only_never_held_top1": (inv.get("cross_client_baselines") or {}).get("local_only"),
        "lokt_random_latent_top1": inv.get("random_latent_acc_top1"),
        "lokt_random_latent_never_held_top1": (inv.get("cross_client_baselines") or {}).get("random_latent"),
        "lokt_knn_private": sum(knn) / len(knn) if knn else None,
        "lokt_knn_public": sum(knn_pub) / len(knn_pub) if knn_pub else None,
        "lokt_queries_per_attack": inv.get("queries"), "lokt_gan_steps": (inv.get("config") or {}).get("gan_steps"),
        "lokt_cpu_seconds_per_attack": sum(lokt_cpu) / len(lokt_cpu) if lokt_cpu else None,
        "judge_acc": (inv.get("judge") or {}).get("global_test_acc"),
        "canary_exposure_owner": (audit.get("canaries") or {}).get("owner", [None])[-1],
        "canary_exposure_peers_mean": (audit.get("canaries") or {}).get("peers_mean", [None])[-1],
        "audit_cpu_seconds": audit["timing"]["cpu_seconds"], "audit_wall_seconds": audit["timing"]["wall_seconds"],
        "rmia_worst_auc": worst.get("rmia", {}).get("auc"),
        "rmia_worst_tpr_at_0.1fpr": worst.get("rmia", {}).get("tpr_at_0.1fpr"),
        "sli_acc_top1": (audit.get("soft_label_inversion") or {}).get("attack_acc_top1"),
        "empirical_epsilon": (audit.get("empirical_epsilon") or {}).get("lower_bound"),
    }


def _f(v, digits=3):
    return "–" if v is None else f"{v:.{digits}f}"


def markdown(results: list[dict]) -> str:
    lines = [
        "| setting | ALMA | ε | MIA worst-client AUC: loss / reference / label-only | TPR@1% FPR (reference) "
        "| LOKT top-1 / top-5 | never-held classes: federated / local-only / random latents | random-latent floor "
        "| queries per attack | LOKT CPU s per attack | audit CPU s |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        row = r["row"]
        auc = row["mia_worst_auc"]
        lines.append(
            f"| {r['name']} | {_f(row['alma'])} | {_f(row['epsilon'], 2)} | {_f(auc.get('loss'))} / "
            f"{_f(auc.get('reference'))} / {_f(auc.get('label_only'))} | "
            f"{_f(row['mia_worst_tpr_at_1fpr'].get('reference'))} | {_f(row['lokt_acc_top1'])} / "
            f"{_f(row['lokt_acc_top5'])} | {_f(row['lokt_never_held_top1'])} / "
            f"{_f(row['lokt_local_only_never_held_top1'])} / {_f(row['lokt_random_latent_never_held_top1'])} | "
            f"{_f(row['lokt_random_latent_top1'])} | {row['lokt_queries_per_attack']:,} | "
            f"{_f(row['lokt_cpu_seconds_per_attack'], 0)} | {_f(row['audit_cpu_seconds'], 0)} |")
    return "\n".join(lines)


def _load_results() -> dict:
    return json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}


def main(argv: list[str]) -> int:
    wanted = [n for n in SETTINGS if not argv or any(n.startswith(a) for a in argv)]
    if not wanted:
        print(f"no setting matches {argv}; known: {', '.join(SETTINGS)}", file=sys.stderr)
        return 2
    for name in wanted:
        done = _load_results()
        entry = run_setting(name, done.get(name, {}).get("costs", {}))
        done = _load_results()  # re-read: another invocation may have added settings meanwhile
        done[name] = entry
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(done, indent=2, sort_keys=True) + "\n")
    previous = _load_results()
    print(markdown([previous[n] for n in SETTINGS if n in previous]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
