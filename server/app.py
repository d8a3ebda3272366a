"""Flower ServerApp entry point (``flwr run .`` and deployments).

``run_simulation`` and ``flwr run`` may hand us a partial or empty
``run_config``: every key missing from it takes fedkd's default.
"""
from __future__ import annotations

from flwr.app import Context
from flwr.serverapp import Grid, ServerApp

from fedkd.config import Config, make_config
from fedkd.prometheus import serve_metrics
from server.rounds import run_federation

app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    cfg = make_config(dict(context.run_config))
    with serve_metrics(cfg.metrics) as observer:  # /metrics while the run lasts (metrics.port)
        summary = run_federation(grid, cfg, observer=observer)
    if summary.get("failure"):  # records written; now Flower marks the run finished:failed (flwr ls, fedkd submit)
        raise RuntimeError(f"the run failed: {summary['failure']}")


def make_server_app(cfg: Config, result: dict, progress: bool = True, observer=None) -> ServerApp:
    """A ServerApp bound to one config; the summary is stored in ``result['summary']``."""
    bound = ServerApp()

    @bound.main()
    def _main(grid: Grid, context: Context) -> None:
        with serve_metrics(cfg.metrics, also=observer) as watching:
            result["summary"] = run_federation(grid, cfg, progress=progress, observer=watching)

    return bound
