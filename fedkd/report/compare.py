"""The ``fedkd compare`` table and ALMA-per-round plot."""
from __future__ import annotations

from pathlib import Path


def plot_alma(results: dict[str, dict], path: Path) -> None:
    """One line per algorithm: ALMA (solid) and global accuracy (dashed) per round."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    for i, (name, s) in enumerate(results.items()):
        rounds = range(1, len(s["alma_per_round"]) + 1)
        line, = ax.plot(rounds, s["alma_per_round"], marker="o", label=f"{name} ALMA")
        ax.plot(rounds, s["global_acc_per_round"], linestyle="--", color=line.get_color(), alpha=0.6,
                label=f"{name} global")
    ax.set_xlabel("round")
    ax.set_ylabel("accuracy")
    ax.set_title("ALMA (solid) and global accuracy (dashed) per round")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def print_compare_table(results: dict[str, dict]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="fedkd compare (same data, same seed)")
    for col in ("algorithm", "ALMA", "global acc", "bytes up/client/round", "bytes down/client/round"):
        table.add_column(col, justify="right")
    for name, s in results.items():
        if s.get("failure"):
            table.add_row(f"{name} (FAILED)", "-", "-", "-", "-")
            continue
        table.add_row(name, f"{s['alma']:.4f}", f"{s['global_acc']:.4f}",
                      f"{s['bytes_up_per_client_round']:,.0f}", f"{s['bytes_down_per_client_round']:,.0f}")
    Console().print(table)
