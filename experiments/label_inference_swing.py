"""The curious server's label-distribution inference against swing-protected uploads (issue 22, item 3).

    python experiments/label_inference_swing.py     # 3 seeds, ~1 min each on 2 cores; resumable

The same setting as experiments/dp_frontier.py (Fashion-MNIST alpha 0.5 from
experiments/configs/fashion.toml, scaled down to 5 clients, 5 rounds, 3,000 private images, 500
transfer images, validation split), with ``privacy.swing = true`` at its default noise and no DP-SGD.
Each seed is one ``fedkd audit --config ... --attacks label_distribution_inference`` (simulate, then the
registered attack on the round-1 uploads); the table compares it with the plain (epsilon = inf) and
DP-SGD rows of the frontier's ledger. Writes experiments/results/label_inference_swing.json.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent))
sys.path.insert(0, str(ROOT))

from dp_frontier import BASE, LEDGER, SIZES  # noqa: E402  (the frontier's setting)

SEEDS = (0, 1, 2)
RUNS = ROOT / "runs" / "label_inference_swing"
OUT = ROOT / "results" / "label_inference_swing.json"


def audit(seed: int) -> dict:
    out = RUNS / f"s{seed}"
    result = out / "audit" / "audit.json"
    if not result.is_file():
        sets = [a for k, v in {**SIZES, "privacy.swing": True, "seed": seed}.items()
                for a in ("--set", f"{k}={str(v).lower() if isinstance(v, bool) else v}")]
        subprocess.run([sys.executable, "-m", "fedkd.cli", "audit", "--config", str(BASE), "--out", str(out),
                        "--quiet", "--attacks", "label_distribution_inference", *sets], check=True)
    ldi = json.loads(result.read_text())["label_distribution_inference"]
    return {"seed": seed, "tv": ldi["mean"]["tv"], "baseline_tv": ldi["mean"]["baseline_tv"],
            "advantage_tv": ldi["advantage"]["tv"], "estimator": ldi["settings"]["estimator"]}


def main() -> None:
    from fedkd.audit.label_distribution import advantage

    rows = [audit(seed) for seed in SEEDS]
    OUT.write_text(json.dumps(rows, indent=1) + "\n")
    frontier = [json.loads(x) for x in LEDGER.read_text().splitlines() if x.strip()] if LEDGER.exists() else []
    print("| uploads | LDI TV (round 1) | no-upload TV | advantage, 95 % CI (clients × seeds) | seeds |")
    print("|---|---|---|---|---|")

    def line(name, tv, base, gaps, n):
        adv = advantage(gaps)
        ci = "" if adv["ci95"] is None else f" [{adv['ci95'][0]:+.3f}, {adv['ci95'][1]:+.3f}]"
        print(f"| {name} | {sum(tv) / len(tv):.3f} | {sum(base) / len(base):.3f} | {adv['mean']:+.3f}{ci} | {n} |")

    for eps, name in ((float("inf"), "plain"), (8.0, "DP-SGD ε = 8"), (1.0, "DP-SGD ε = 1")):
        cell = [r for r in frontier if r["key"]["algorithm"] == "local" and r["key"]["epsilon"] == eps]
        if cell:  # round 1 has no exchange: one algorithm's uploads stand for all three
            line(name, [r["ldi_tv"] for r in cell], [r["ldi_baseline_tv"] for r in cell],
                 [b - t for r in cell for t, b in zip(r["ldi_tv_per_client"], r["ldi_baseline_tv_per_client"])],
                 len(cell))
    swing_gaps = []
    for seed in SEEDS:
        audit_json = json.loads((RUNS / f"s{seed}" / "audit" / "audit.json").read_text())["label_distribution_inference"]
        swing_gaps += [audit_json[k]["baseline_tv"] - audit_json[k]["tv"] for k in audit_json
                       if k.isdigit()]
    line("swing (default σ)", [r["tv"] for r in rows], [r["baseline_tv"] for r in rows], swing_gaps, len(rows))


if __name__ == "__main__":
    main()
