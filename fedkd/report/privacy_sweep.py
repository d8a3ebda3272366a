"""``fedkd privacy-sweep``: plain distillation vs swing at several noise levels, same data and seeds."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def sweep_settings(noise_levels: list[float]) -> list[tuple[str, dict]]:
    """(label, overrides) for the plain run and one swing run per noise level."""
    runs = [("plain", {"privacy.swing": False})]
    for sigma in noise_levels:
        runs.append((f"swing sigma={sigma:g}", {"privacy.swing": True, "privacy.noise_scale": sigma}))
    return runs


def sweep_rows(results: dict[str, dict]) -> list[dict]:
    """One row per run: ALMA, global accuracy, epsilon, exposures and their reduction vs plain."""
    plain = results.get("plain", {}).get("canaries", {})
    rows = []
    for label, s in results.items():
        can = s.get("canaries", {})
        eps = s.get("privacy", {}).get("epsilon", float("inf") if label == "plain" else float("nan"))
        row = {"run": label, "alma": s["alma"], "global_acc": s["global_acc"], "epsilon": eps,
               "exposure_owner": can.get("exposure_owner", float("nan")),
               "exposure_peers_mean": can.get("exposure_peers_mean", float("nan"))}
        for key in ("exposure_owner", "exposure_peers_mean"):
            base = plain.get(key)
            row[f"{key}_reduction_pct"] = (100.0 * (1 - row[key] / base)) if base else float("nan")
        rows.append(row)
    return rows


def print_sweep_table(rows: list[dict]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="privacy sweep (same data, same seed)")
    for col in ("run", "ALMA", "global acc", "epsilon", "exposure owner", "exposure peers",
                "peers reduction vs plain"):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(r["run"], f"{r['alma']:.4f}", f"{r['global_acc']:.4f}", f"{r['epsilon']:.4g}",
                      f"{r['exposure_owner']:.2f}", f"{r['exposure_peers_mean']:.2f}",
                      f"{r['exposure_peers_mean_reduction_pct']:.1f} %")
    Console().print(table)


def plot_sweep(rows: list[dict], path: Path) -> None:
    """ALMA against epsilon (log scale), with each point's peer exposure as its colour."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), dpi=120)
    finite = [r for r in rows if np.isfinite(r["epsilon"])]
    ax = axes[0]
    if finite:
        sc = ax.scatter([r["epsilon"] for r in finite], [r["alma"] for r in finite],
                        c=[r["exposure_peers_mean"] for r in finite], cmap="viridis", s=60)
        fig.colorbar(sc, ax=ax, label="peer canary exposure (bits)")
        for r in finite:
            ax.annotate(r["run"].replace("swing ", ""), (r["epsilon"], r["alma"]), fontsize=7)
        ax.set_xscale("log")
    for r in rows:
        if not np.isfinite(r["epsilon"]):
            ax.axhline(r["alma"], linestyle="--", color="grey", label=f"{r['run']} (no guarantee)")
    ax.set_xlabel("epsilon (per transfer-sample answer, all rounds)")
    ax.set_ylabel("ALMA")
    ax.legend(fontsize=7)
    ax.set_title("utility vs privacy budget")
    ax = axes[1]
    labels = [r["run"] for r in rows]
    x = np.arange(len(rows))
    ax.bar(x - 0.2, [r["exposure_owner"] for r in rows], width=0.4, label="owner")
    ax.bar(x + 0.2, [r["exposure_peers_mean"] for r in rows], width=0.4, label="peers (mean)")
    ax.set_xticks(x, labels, rotation=30, ha="right", fontsize=7)
    ax.set_ylabel("canary exposure (bits)")
    ax.set_title("does the secret travel?")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
