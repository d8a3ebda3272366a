"""The per-round table printed after a run (``fedkd simulate``, ``fedkd federation``)."""
from __future__ import annotations

from pathlib import Path

from fedkd.run_records import read_rounds


def print_run_table(summary: dict, out_dir: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    rounds = read_rounds(out_dir)
    if summary["dataset"] == "folder":  # nodes on their own folders: no dataset, no simulated split
        title = (f"{summary['algorithm']} on folder {summary.get('data', '')}: {summary['num_clients']} clients, "
                 f"transfer set of {summary['transfer_size']}, seed={summary['seed']}")
    else:
        title = (f"{summary['algorithm']} on {summary['dataset']}: {summary['num_clients']} clients, "
                 f"alpha={summary['alpha']}, seed={summary['seed']}")
    table = Table(title=title)
    for col in ("round", "ALMA", "global acc", "ALMA after digest", "replies", "rejected",
                "bytes up/client", "bytes down/client"):
        table.add_column(col, justify="right")

    def number(value, fmt: str) -> str:
        return "-" if value is None or value != value else format(value, fmt)

    for r in rounds:
        table.add_row(str(r["round"]), number(r["alma"], ".4f"), number(r["global_acc"], ".4f"),
                      number(r["alma_after_digest"], ".4f"), str(r["replies"]), str(sum(r["rejected"].values())),
                      number(r["bytes_up_per_client"], ",.0f"), number(r["bytes_down_per_client"], ",.0f"))
    console = Console()
    console.print(table)
    rejected = summary.get("rejected_replies") or {}
    if rejected:
        console.print(f"rejected replies by reason: {rejected}")
    if summary.get("identity_alarms"):
        console.print(f"[bold red]identity alarms[/]: {summary['identity_alarms']}")
    console.print(f"final ALMA {number(summary['alma'], '.4f')}, global accuracy "
                  f"{number(summary['global_acc'], '.4f')}; run record in {out_dir}")
