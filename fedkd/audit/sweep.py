"""Audit every run of a privacy sweep and put them on one privacy-utility frontier.

``fedkd privacy-sweep --out DIR`` writes ``DIR/sweep.json`` (``rows``: one per run with
ALMA, epsilon and canary exposure) and one run folder per setting, ``DIR/run<i>``, in
the order of the rows. :func:`audit_sweep` audits each run folder (its own
``run<i>/audit/``), sharing what does not depend on the privacy setting (the judge,
the reference models, the local-only baseline: the runs share data and seeds), and
writes ``DIR/audit/audit.json`` and ``report.html`` with the frontier.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from fedkd.config import make_config
from fedkd.privacy.settings import PrivacySettings

from .artifacts import finite_or_none
from .run import AuditSettings, audit_run, clean_json

__all__ = ["audit_sweep", "sweep_run_dirs"]


def _label(privacy: PrivacySettings) -> str:
    """The sweep's label for a run's privacy settings (as ``fedkd.report.privacy_sweep.sweep_settings`` names it)."""
    return f"swing sigma={privacy.noise_scale:g}" if privacy.swing else "plain"


def sweep_run_dirs(sweep_dir) -> list[tuple[dict, Path]]:
    """(row of sweep.json, its run folder) pairs, checked against each run's config."""
    sweep_dir = Path(sweep_dir)
    path = sweep_dir / "sweep.json"
    if not path.is_file():
        raise FileNotFoundError(f"{sweep_dir} is not a privacy-sweep folder: it has no sweep.json")
    rows = json.loads(path.read_text()).get("rows", [])
    if not rows:
        raise ValueError(f"{path} holds no rows")
    pairs = []
    for i, row in enumerate(rows):
        run_dir = sweep_dir / f"run{i}"
        config_path = run_dir / "config.json"
        if not config_path.is_file():
            raise FileNotFoundError(f"{run_dir} (the run of sweep row {row['run']!r}) has no config.json")
        label = _label(make_config(json.loads(config_path.read_text()), known_only=True).privacy)
        if label != row["run"]:
            raise ValueError(f"{run_dir} is a {label!r} run but sweep.json row {i} is {row['run']!r}")
        pairs.append((row, run_dir))
    return pairs


def _frontier_row(row: dict, audit: dict, report_rel: str) -> dict:
    worst = audit["membership"]["worst_client"]
    attack = max(worst, key=lambda a: worst[a]["auc"]) if worst else None
    inversion = audit.get("inversion") or {}
    max_exposure = (audit.get("canaries") or {}).get("max_exposure")
    peers = finite_or_none(row.get("exposure_peers_mean"))
    rmia = {cid: res["rmia"] for cid, res in audit["membership"]["per_client"].items() if "rmia" in res}
    rmia_worst = max(rmia, key=lambda c: rmia[c]["tpr_at_0.1fpr"]) if rmia else None
    sli = audit.get("soft_label_inversion") or {}
    emp = audit.get("empirical_epsilon") or {}
    upload_mia = (audit.get("upload_membership") or {}).get("headline") or {}
    return {
        **{k: finite_or_none(v) if isinstance(v, float) else v for k, v in row.items()},
        "mia_worst_attack": attack,
        "mia_worst_client": worst[attack]["client"] if attack else None,
        "mia_worst_auc": worst[attack]["auc"] if attack else None,
        "mia_worst_tpr_at_1fpr": worst[attack]["tpr_at_1fpr"] if attack else None,
        "lokt_acc_top1": inversion.get("attack_acc_top1"),
        "lokt_cross_client_acc_top1": inversion.get("cross_client_attack_acc_top1"),
        "rmia_worst_client": rmia_worst,
        "rmia_worst_tpr_at_0.1fpr": rmia[rmia_worst]["tpr_at_0.1fpr"] if rmia_worst else None,
        "rmia_worst_auc": rmia[rmia_worst]["auc"] if rmia_worst else None,
        "sli_acc_top1": sli.get("attack_acc_top1"),
        "upload_mia_worst_auc": upload_mia.get("auc"),  # the server's attack from the uploads (None: not run)
        "upload_mia_worst_tpr_at_1fpr": upload_mia.get("tpr_at_1fpr"),
        "empirical_epsilon": emp.get("lower_bound"),
        "accounted_epsilon_training_set": emp.get("accounted_training_set"),
        "exposure_peers_mean_norm": (peers / max_exposure) if peers is not None and max_exposure else None,
        "audit_cpu_seconds": audit["timing"]["cpu_seconds"],
        "report": report_rel,
    }


def audit_sweep(sweep_dir, settings: AuditSettings | None = None, *, out_dir=None) -> dict:
    """Audit each run of a privacy sweep, then write the sweep's frontier report.

    Parameters
    ----------
    sweep_dir : str or Path
        Output folder of ``fedkd privacy-sweep``.
    settings : AuditSettings, optional
        Applied to every run.
    out_dir : str or Path, optional
        Where the sweep's ``audit.json`` and ``report.html`` go (default ``<sweep_dir>/audit``);
        each run's own audit goes to ``<sweep_dir>/run<i>/audit``.

    Returns
    -------
    sweep : dict
        The sweep's audit.json content: ``rows`` (sweep.json rows plus the audit's worst-client
        MIA AUC, LOKT accuracy and a link to each run's report) and ``runs`` (every run's
        full audit).
    """
    from fedkd.run_records import write_json_atomic
    from fedkd.report.audit_report import render_sweep_report

    settings = settings or AuditSettings()
    sweep_dir = Path(sweep_dir)
    out = Path(out_dir) if out_dir is not None else sweep_dir / "audit"
    pairs = sweep_run_dirs(sweep_dir)
    out.mkdir(parents=True, exist_ok=True)
    cache: dict = {}
    rows, runs = [], {}
    for row, run_dir in pairs:
        audit = audit_run(run_dir, settings, cache=cache)
        rel = os.path.relpath(audit["paths"]["report_html"], out)
        rows.append(_frontier_row(row, audit, rel))
        runs[row["run"]] = audit
    sweep = clean_json({
        "sweep_dir": str(sweep_dir), "rows": rows, "runs": runs,
        "timing": {k: float(np.sum([r["timing"][k] for r in runs.values()]))
                   for k in ("wall_seconds", "cpu_seconds")},
        "paths": {"audit_json": str(out / "audit.json"), "report_html": str(out / "report.html")},
    })
    render_sweep_report(sweep, out / "report.html")
    write_json_atomic(out / "audit.json", sweep)
    return sweep
