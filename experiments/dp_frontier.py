"""DP-SGD privacy-utility frontier: epsilon in {1, 3, 8, inf} x {local, FedMD, KnFu} x seeds, one command.

    flock /tmp/fedkd-heavy.lock python experiments/dp_frontier.py run      # resumable, one JSON line per run
    python experiments/dp_frontier.py rmia     # then RMIA on every run (fedkd audit --quick; ~30 s per run)
    python experiments/dp_frontier.py upload --seeds 0   # the server's MIA from the uploads (and on swing runs)
    python experiments/dp_frontier.py weight             # FedMD and KnFu at epsilon 8 with distill_weight 0.03
    python experiments/dp_frontier.py table                                # the Markdown table for the docs
    python experiments/dp_frontier.py plot     # the same numbers drawn: experiments/runs/dp_frontier.png

Every run is a real simulation (``run_simulation``, as ``fedkd simulate``) with ``privacy.dp_sgd`` and
``privacy.dp_target_epsilon`` for the whole run (delta = privacy.delta = 1e-5); epsilon = inf is the
same run without DP-SGD. After each run it measures, with the audit's own functions:

- the accounted training epsilon (summary.json) and the one-run empirical lower bound of a DP-SGD
  replay of the canary client (``fedkd.audit.dp_check``; at inf: the same replay with clipping and no
  noise, i.e. what leaks without the noise);
- the curious server's label-distribution inference from the round-1 uploads (TV to the true
  histogram, and the no-upload guess).

Fashion-MNIST (alpha 0.5) when Debian's dataset-fashion-mnist is installed, else digits (say so).
Sizes are modest (2 shared CPU cores): see SIZES. ``rmia`` audits every finished run whose folder is still
there with RMIA (``fedkd audit --attacks membership --quick``).
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent))

EPSILONS = (1.0, 3.0, 8.0, math.inf)
ALGORITHMS = ("local", "fedmd", "knfu")
SEEDS = (0, 1, 2)
BASE = ROOT / "configs" / "fashion.toml"  # the tuned Fashion setting (joint order), scaled down below
SIZES = {"num_clients": 5, "rounds": 5, "private_pool_size": 3000, "transfer_size": 500, "global_test_size": 1000,
         "alpha": 0.5, "eval_split": "val", "save_models": True}
LEDGER = ROOT / "results" / "dp_frontier.jsonl"


def read_ledger(path: Path) -> list[dict]:
    """One dict per non-empty line of a JSON-lines ledger; [] while it does not exist."""
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def done_keys(path: Path) -> set[str]:
    """The run keys a ledger already has (JSON with sorted keys): what a resumed command skips."""
    return {json.dumps(r["key"], sort_keys=True) for r in read_ledger(path)}


def rmia_by_key() -> dict:
    """The RMIA ledger's rows by their run key (JSON with sorted keys)."""
    return {json.dumps(r["key"], sort_keys=True): r for r in read_ledger(RMIA_LEDGER)}


def pick_dataset() -> str:
    try:
        from fedkd.config import make_config

        make_config({"dataset": "fashion-mnist"})
        from fedkd.data import build_federation

        build_federation(make_config({"dataset": "fashion-mnist", "num_clients": 2}).federation)
        return "fashion-mnist"
    except Exception:  # noqa: BLE001 -- not installed here: fall back to digits and say so in the ledger
        return "digits"


def plan(data: str):
    for seed in SEEDS:  # seed-major: an interrupted run still covers every cell once
        for eps in EPSILONS:
            for algorithm in ALGORITHMS:
                yield {"dataset": data, "algorithm": algorithm, "seed": seed, "epsilon": eps}


def measure(out: Path, eps: float) -> dict:
    from fedkd.audit.artifacts import load_run
    from fedkd.audit.dp_check import audit_dp_check_of_run, dp_replay_check
    from fedkd.audit.label_distribution import audit_label_distribution_of_run
    from fedkd.audit.run import AuditSettings
    from fedkd.models import build_model
    from fedkd.privacy.canaries import make_canaries
    from fedkd.seeding import derive_seed

    settings = AuditSettings.quick(progress=False)
    art = load_run(out)
    check = audit_dp_check_of_run(art, settings, lambda _: None)
    if check is None:  # no DP-SGD: the same replay with clipping and no noise
        cfg, fed = art.cfg, art.federation
        m, seed = settings.one_run_canaries, derive_seed(settings.seed, "dp-check", 0)
        cand_x, cand_y = make_canaries(m, fed.input_shape, fed.num_classes, seed)
        included = np.random.default_rng(seed).random(m) < 0.5
        arch = list(cfg.training.models)[0]
        check = dp_replay_check(
            lambda: build_model(arch, fed.input_shape, fed.num_classes, seed=derive_seed(cfg.run.seed, "init", 0)),
            fed.clients[0].train_x, fed.clients[0].train_y, np.array(fed.transfer_x), cand_x, cand_y, included,
            clip=float(cfg.privacy.dp_clip), noise_multiplier=0.0, rounds=int(cfg.run.rounds),
            epochs_per_round=int(cfg.training.revisit_epochs), batch_size=int(cfg.training.batch_size), lr=float(cfg.training.lr),
            temperature=float(cfg.training.temperature), delta=float(cfg.privacy.delta), seed=seed)
    ldi = audit_label_distribution_of_run(art, list(range(int(art.cfg.run.num_clients))), settings)
    clients = range(int(art.cfg.run.num_clients))
    return {"empirical_lower_bound": check["empirical_lower_bound"], "dp_check_passed": check["passed"],
            "replay_accounted_epsilon": check["accounted_epsilon"],
            "ldi_tv": ldi["mean"]["tv"], "ldi_baseline_tv": ldi["mean"]["baseline_tv"],
            "ldi_estimator": ldi["settings"]["estimator"], "ldi_vote_tv": ldi["mean"]["vote_tv"],
            "ldi_mean_tv": ldi["mean"]["mean_tv"], "ldi_tv_per_client": [ldi[str(c)]["tv"] for c in clients],
            "ldi_baseline_tv_per_client": [ldi[str(c)]["baseline_tv"] for c in clients]}


def run(out_root: Path) -> None:
    from fedkd.cli.simulation import run_simulation
    from fedkd.config import load_config

    data = pick_dataset()
    LEDGER.parent.mkdir(parents=True, exist_ok=True)
    done = done_keys(LEDGER)
    cells = list(plan(data))
    for i, key in enumerate(cells):
        if json.dumps(key, sort_keys=True) in done:
            continue
        eps = key["epsilon"]
        overrides = {**SIZES, "dataset": data, "algorithm": key["algorithm"], "seed": key["seed"]}
        if math.isfinite(eps):
            overrides.update({"privacy.dp_sgd": True, "privacy.dp_target_epsilon": eps})
        out = out_root / f"{data}-{key['algorithm']}-eps{eps}-seed{key['seed']}"
        if out.exists():
            import shutil

            shutil.rmtree(out)
        started = time.perf_counter()
        cfg = load_config(BASE, [f"{k}={v}" for k, v in overrides.items()])
        summary = run_simulation(cfg, out, progress=False)
        row = {"key": key, "overrides": overrides, "alma": summary["alma"], "global_acc": summary["global_acc"],
               "training_epsilon": (summary.get("privacy") or {}).get("training_epsilon"),
               **measure(out, eps), "seconds": time.perf_counter() - started}
        with open(LEDGER, "a") as fh:
            fh.write(json.dumps(row, default=float) + "\n")
        print(f"[{i + 1}/{len(cells)}] {key}: ALMA {row['alma']:.3f} eps {row['training_epsilon']} "
              f"LB {row['empirical_lower_bound']:.2f} LDI TV {row['ldi_tv']:.3f} (no-upload "
              f"{row['ldi_baseline_tv']:.3f}) {row['seconds']:.0f} s", flush=True)


RMIA_LEDGER = ROOT / "results" / "dp_frontier_rmia.jsonl"


def run_rmia(out_root: Path) -> None:
    """RMIA on every finished run: ``fedkd audit RUN --attacks membership --quick`` (2 reference models),
    one JSON line per run in ``RMIA_LEDGER`` (resumable): TPR at 1 % FPR and AUC, mean and worst client."""
    import subprocess

    rows = read_ledger(LEDGER)
    done = done_keys(RMIA_LEDGER)
    for i, row in enumerate(rows):
        key = row["key"]
        if json.dumps(key, sort_keys=True) in done:
            continue
        run_dir = out_root / f"{key['dataset']}-{key['algorithm']}-eps{key['epsilon']}-seed{key['seed']}"
        audit_dir = run_dir / "audit-rmia"
        if not (run_dir / "config.json").is_file():
            print(f"[{i + 1}/{len(rows)}] {key}: no run folder at {run_dir}; skipped", flush=True)
            continue
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "fedkd.cli", "audit", str(run_dir), "--out", str(audit_dir),
                        "--attacks", "membership", "--quick", "--quiet"], check=True)
        rmia = {c: v["rmia"] for c, v in
                json.loads((audit_dir / "audit.json").read_text())["membership"]["per_client"].items()}
        out = {"key": key, "rmia_tpr_1fpr": float(np.mean([v["tpr_at_1fpr"] for v in rmia.values()])),
               "rmia_tpr_1fpr_worst": float(max(v["tpr_at_1fpr"] for v in rmia.values())),
               "rmia_auc": float(np.mean([v["auc"] for v in rmia.values()])),
               "rmia_per_client": rmia_summary(rmia), "seconds": time.perf_counter() - started}
        with open(RMIA_LEDGER, "a") as fh:
            fh.write(json.dumps(out) + "\n")
        print(f"[{i + 1}/{len(rows)}] {key}: RMIA TPR@1%FPR {out['rmia_tpr_1fpr']:.3f} (worst client "
              f"{out['rmia_tpr_1fpr_worst']:.3f}), AUC {out['rmia_auc']:.3f}, {out['seconds']:.0f} s", flush=True)


UPLOAD_LEDGER = ROOT / "results" / "dp_frontier_upload_mia.jsonl"
SWING_RUNS = ROOT / "runs" / "label_inference_swing"  # experiments/label_inference_swing.py: swing at its default


def run_upload_mia(out_root: Path, seeds: set[int]) -> None:
    """The curious server's membership inference from the uploads (``fedkd audit RUN --attacks
    membership,upload_membership --quick``) on the frontier's runs of ``seeds`` and on the swing runs of
    experiments/label_inference_swing.py; one JSON line per run in ``UPLOAD_LEDGER`` (resumable): RMIA
    through the surrogate (TPR at 1 % FPR, AUC; mean and worst client), the surrogate's agreement with the
    client's model, and RMIA on the model itself from the same audit for comparison."""
    import subprocess

    rows = read_ledger(LEDGER)
    targets = [(row["key"], out_root / f"{row['key']['dataset']}-{row['key']['algorithm']}-eps{row['key']['epsilon']}"
                f"-seed{row['key']['seed']}") for row in rows if row["key"]["seed"] in seeds]
    targets += [({"dataset": "fashion-mnist", "algorithm": "knfu", "epsilon": "swing", "seed": seed},
                 SWING_RUNS / f"s{seed}") for seed in sorted(seeds)]
    done = done_keys(UPLOAD_LEDGER)
    for i, (key, run_dir) in enumerate(targets):
        if json.dumps(key, sort_keys=True) in done:
            continue
        if not (run_dir / "config.json").is_file():
            print(f"[{i + 1}/{len(targets)}] {key}: no run folder at {run_dir}; skipped", flush=True)
            continue
        audit_dir = run_dir / "audit-upload"
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "fedkd.cli", "audit", str(run_dir), "--out", str(audit_dir),
                        "--attacks", "membership,upload_membership", "--quick", "--quiet"], check=True)
        audit = json.loads((audit_dir / "audit.json").read_text())
        upload = {c: v["rmia"] for c, v in audit["upload_membership"]["per_client"].items()}
        model = {c: v["rmia"] for c, v in audit["membership"]["per_client"].items()}
        out = {"key": key,
               "upload_rmia_tpr_1fpr": float(np.mean([v["tpr_at_1fpr"] for v in upload.values()])),
               "upload_rmia_tpr_1fpr_worst": float(max(v["tpr_at_1fpr"] for v in upload.values())),
               "upload_rmia_auc": float(np.mean([v["auc"] for v in upload.values()])),
               "model_rmia_tpr_1fpr": float(np.mean([v["tpr_at_1fpr"] for v in model.values()])),
               "model_rmia_auc": float(np.mean([v["auc"] for v in model.values()])),
               "surrogate_agreement": audit["upload_membership"]["surrogate_agreement"]["mean"],
               "seconds": time.perf_counter() - started}
        with open(UPLOAD_LEDGER, "a") as fh:
            fh.write(json.dumps(out) + "\n")
        print(f"[{i + 1}/{len(targets)}] {key}: from the uploads RMIA TPR@1%FPR {out['upload_rmia_tpr_1fpr']:.3f}, "
              f"AUC {out['upload_rmia_auc']:.3f} (model {out['model_rmia_auc']:.3f}; surrogate agreement "
              f"{out['surrogate_agreement']:.3f}), {out['seconds']:.0f} s", flush=True)


def upload_table() -> str:
    """The server's membership inference from the uploads against the same attack on the models."""
    if not UPLOAD_LEDGER.exists():
        return "(no upload-MIA runs: python experiments/dp_frontier.py upload)"
    rows = read_ledger(UPLOAD_LEDGER)
    lines = ["| uploads | algorithm | RMIA from the uploads: TPR at 1 % FPR (%, mean client) | AUC | "
             "RMIA on the model: TPR at 1 % FPR (%) | AUC | surrogate agreement | seeds |",
             "|---|---|---|---|---|---|---|---|"]
    order = [*(str(e) for e in EPSILONS), "swing"]
    for eps in order:
        for algorithm in ALGORITHMS:
            cell = [r for r in rows if str(r["key"]["epsilon"]) == eps and r["key"]["algorithm"] == algorithm]
            if not cell:
                continue
            label = ("plain (ε = ∞)" if eps == "inf" else "swing, default σ" if eps == "swing"
                     else f"DP-SGD ε = {float(eps):g}")
            lines.append(f"| {label} | {algorithm} | {pm([r['upload_rmia_tpr_1fpr'] for r in cell], 100, 1)} "
                         f"| {pm([r['upload_rmia_auc'] for r in cell], 1, 3)} "
                         f"| {pm([r['model_rmia_tpr_1fpr'] for r in cell], 100, 1)} "
                         f"| {pm([r['model_rmia_auc'] for r in cell], 1, 3)} "
                         f"| {pm([r['surrogate_agreement'] for r in cell], 1, 3)} "
                         f"| {','.join(str(r['key']['seed']) for r in cell)} |")
    return "\n".join(lines)


WEIGHT_LEDGER = ROOT / "results" / "dp_frontier_weight.jsonl"
WEIGHT_EPSILON, SMALL_WEIGHT = 8.0, 0.03


def run_weight(out_root: Path) -> None:
    """FedMD and KnFu under DP-SGD at epsilon 8 with ``distill_weight`` 0.03 instead of the run default 0.3
    (docs/privacy.md §9: why the default weight hurts DP clients); one JSON line per run in WEIGHT_LEDGER."""
    from fedkd.cli.simulation import run_simulation
    from fedkd.config import load_config

    data = pick_dataset()
    done = done_keys(WEIGHT_LEDGER)
    for seed in SEEDS:
        for algorithm in ("knfu", "fedmd"):
            key = {"dataset": data, "algorithm": algorithm, "seed": seed, "epsilon": WEIGHT_EPSILON,
                   "distill_weight": SMALL_WEIGHT}
            if json.dumps(key, sort_keys=True) in done:
                continue
            overrides = {**SIZES, "save_models": False, "dataset": data, "algorithm": algorithm, "seed": seed,
                         "privacy.dp_sgd": True, "privacy.dp_target_epsilon": WEIGHT_EPSILON,
                         "distill_weight": SMALL_WEIGHT}
            out = out_root / f"{data}-{algorithm}-eps{WEIGHT_EPSILON}-w{SMALL_WEIGHT}-seed{seed}"
            summary = run_simulation(load_config(BASE, [f"{k}={v}" for k, v in overrides.items()]), out,
                                     progress=False)
            row = {"key": key, "alma": summary["alma"], "global_acc": summary["global_acc"],
                   "training_epsilon": summary["privacy"]["training_epsilon"]}
            with open(WEIGHT_LEDGER, "a") as fh:
                fh.write(json.dumps(row) + "\n")
            print(f"{key}: ALMA {row['alma']:.3f} global {row['global_acc']:.3f}", flush=True)


def weight_table() -> str:
    if not WEIGHT_LEDGER.exists():
        return "(no runs: python experiments/dp_frontier.py weight)"
    small = read_ledger(WEIGHT_LEDGER)
    frontier = read_ledger(LEDGER)
    lines = [f"| ε = {WEIGHT_EPSILON:g}: ALMA % / global % | " + " | ".join(f"seed {s}" for s in SEEDS) + " | mean |",
             "|---" * (len(SEEDS) + 2) + "|"]
    cells = [("local", [r for r in frontier if r["key"]["algorithm"] == "local"]),
             ("KnFu, distill_weight 0.3 (frontier)", [r for r in frontier if r["key"]["algorithm"] == "knfu"]),
             (f"KnFu, distill_weight {SMALL_WEIGHT:g}", [r for r in small if r["key"]["algorithm"] == "knfu"]),
             (f"FedMD, distill_weight {SMALL_WEIGHT:g}", [r for r in small if r["key"]["algorithm"] == "fedmd"])]
    for label, rows in cells:
        by_seed = {r["key"]["seed"]: r for r in rows if r["key"]["epsilon"] == WEIGHT_EPSILON}
        got = [by_seed[s] for s in SEEDS if s in by_seed]
        parts = [f"{100 * by_seed[s]['alma']:.1f} / {100 * by_seed[s]['global_acc']:.1f}" if s in by_seed else "–"
                 for s in SEEDS]
        mean = (f"{100 * np.mean([r['alma'] for r in got]):.1f} / {100 * np.mean([r['global_acc'] for r in got]):.1f}"
                if got else "–")
        lines.append(f"| {label} | " + " | ".join(parts) + f" | {mean} |")
    return "\n".join(lines)


def rmia_summary(rmia: dict) -> dict:
    return {c: {"auc": v["auc"], "tpr_at_1fpr": v["tpr_at_1fpr"]} for c, v in rmia.items()}


def pm(values, scale=1.0, digits=3) -> str:
    values = [v * scale for v in values if v is not None and math.isfinite(v)]
    if not values:
        return "—"
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{np.mean(values):.{digits}f} ± {np.std(values, ddof=1):.{digits}f}"


def advantage_text(cell: list[dict]) -> str:
    """The label-distribution attack's advantage over the no-upload guess (TV), pooled over the cell's
    clients and seeds, with its bootstrap interval (``fedkd.audit.label_distribution.advantage``)."""
    from fedkd.audit.label_distribution import advantage

    gaps = [b - t for r in cell for t, b in zip(r["ldi_tv_per_client"], r["ldi_baseline_tv_per_client"])]
    adv = advantage(gaps)
    if adv["ci95"] is None:
        return f"{adv['mean']:+.3f}"
    return f"{adv['mean']:+.3f} [{adv['ci95'][0]:+.3f}, {adv['ci95'][1]:+.3f}]" + (" leaks" if adv["leaks"] else "")


def rmia_text(cell: list[dict], rmia: dict) -> str:
    found = [rmia[k] for k in (json.dumps(r["key"], sort_keys=True) for r in cell) if k in rmia]
    if not found:
        return "— | —"
    return (f"{pm([f['rmia_tpr_1fpr'] for f in found], 100, 1)} / {pm([f['rmia_tpr_1fpr_worst'] for f in found], 100, 1)}"
            f" | {pm([f['rmia_auc'] for f in found], 1, 3)}")


def table() -> str:
    rows = read_ledger(LEDGER)
    data = sorted({r["key"]["dataset"] for r in rows})
    lines = [f"Dataset: {', '.join(data)}; experiments/configs/fashion.toml with {SIZES['num_clients']} clients, "
             f"{SIZES['rounds']} rounds, {SIZES['private_pool_size']} private images, alpha {SIZES['alpha']}, "
             "validation split; "
             "mean ± std over seeds (n per cell in the last column).", "",
             "| target ε | algorithm | ALMA (%) | global acc (%) | accounted ε | empirical lower bound | "
             "LDI TV (round-1 uploads) | no-upload TV | LDI advantage, 95 % CI (clients × seeds) | "
             "RMIA TPR at 1 % FPR (%; mean client / worst) | RMIA AUC | n |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    rmia = rmia_by_key()
    for eps in EPSILONS:
        for algorithm in ALGORITHMS:
            cell = [r for r in rows if r["key"]["algorithm"] == algorithm and r["key"]["epsilon"] == eps]
            if not cell:
                continue
            lines.append(
                f"| {'∞' if math.isinf(eps) else f'{eps:g}'} | {algorithm} | {pm([r['alma'] for r in cell], 100, 1)} "
                f"| {pm([r['global_acc'] for r in cell], 100, 1)} | {pm([r['training_epsilon'] for r in cell], 1, 2)} "
                f"| {pm([r['empirical_lower_bound'] for r in cell], 1, 2)} | {pm([r['ldi_tv'] for r in cell])} "
                f"| {pm([r['ldi_baseline_tv'] for r in cell])} | {advantage_text(cell)} "
                f"| {rmia_text(cell, rmia)} | {len(cell)} |")
    return "\n".join(lines)

PLOT = ROOT / "runs" / "dp_frontier.png"  # generated, not kept in the repository


def plot(path: Path = PLOT) -> Path:
    """Draw the frontier from the ledgers: ALMA, global accuracy and RMIA's TPR at 1 % FPR against the target
    epsilon (categorical axis, no DP at the right), one line per algorithm, mean and standard deviation over
    seeds; the epsilon-8 runs with the smaller distillation weight as open markers beside them."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    rows = read_ledger(LEDGER)
    rmia = rmia_by_key()
    small = read_ledger(WEIGHT_LEDGER)
    panels = (("ALMA (%)", lambda r: r.get("alma")), ("global accuracy (%)", lambda r: r.get("global_acc")),
              ("RMIA TPR at 1 % FPR (%, mean client)",
               lambda r: (rmia.get(json.dumps(r["key"], sort_keys=True)) or {}).get("rmia_tpr_1fpr")))
    colours = {"local": "tab:gray", "fedmd": "tab:blue", "knfu": "tab:red"}
    xs = np.arange(len(EPSILONS))
    fig, axes = plt.subplots(1, len(panels), figsize=(13, 3.8))
    for ax, (title, value) in zip(axes, panels):
        for j, algorithm in enumerate(ALGORITHMS):
            means, stds = [], []
            for eps in EPSILONS:
                got = [100 * v for r in rows if r["key"]["algorithm"] == algorithm and r["key"]["epsilon"] == eps
                       for v in [value(r)] if v is not None]
                means.append(np.mean(got) if got else np.nan)
                stds.append(np.std(got, ddof=1) if len(got) > 1 else 0.0)
            ax.errorbar(xs + 0.06 * (j - 1), means, yerr=stds, marker="o", capsize=3, color=colours[algorithm],
                        label=algorithm)
            weight = [100 * value(r) for r in small if r["key"]["algorithm"] == algorithm
                      and value(r) is not None and title != panels[2][0]]
            if weight:
                ax.errorbar([EPSILONS.index(WEIGHT_EPSILON) + 0.25 + 0.06 * (j - 1)], [np.mean(weight)],
                            yerr=[np.std(weight, ddof=1) if len(weight) > 1 else 0.0], marker="o", mfc="white",
                            capsize=3, color=colours[algorithm], linestyle="none",
                            label=f"{algorithm}, distill_weight {SMALL_WEIGHT:g}")
        ax.set_xticks(xs, ["1", "3", "8", "∞ (no DP)"])
        ax.set_xlabel("target ε (δ = 1e-5, whole run)")
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7, loc="lower right")
    data = ", ".join(sorted({r["key"]["dataset"] for r in rows}))
    fig.suptitle(f"DP-SGD frontier: {data}, alpha {SIZES['alpha']}, {SIZES['num_clients']} clients, "
                 f"{SIZES['rounds']} rounds, mean ± sd over seeds {', '.join(map(str, SEEDS))} "
                 "(experiments/dp_frontier.py)", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=("run", "rmia", "upload", "weight", "table", "plot"))
    parser.add_argument("--out", default=str(ROOT / "runs" / "dp_frontier"))
    parser.add_argument("--seeds", default="0", help="upload: the frontier seeds to attack (comma-separated)")
    args = parser.parse_args()
    if args.what == "run":
        run(Path(args.out))
    elif args.what == "rmia":
        run_rmia(Path(args.out))
    elif args.what == "upload":
        run_upload_mia(Path(args.out), {int(x) for x in args.seeds.split(",")})
    elif args.what == "weight":
        run_weight(Path(args.out))
    elif args.what == "plot":
        print(f"wrote {plot()}")
    else:
        print(table())
        print()
        print(upload_table())
        print()
        print(weight_table())


if __name__ == "__main__":
    main()
