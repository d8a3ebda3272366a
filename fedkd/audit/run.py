"""Audit a finished run: every registered privacy attack on its saved models and records.

``audit_run(run_dir)`` rebuilds the run's data from its config, loads every saved client
model, runs the registered attacks (:mod:`fedkd.audit.attacks`: membership inference, LOKT
inversion, the server's soft-label inversion, the one-run empirical epsilon, the DP-SGD check, the
server's label-distribution and membership inference from the uploads, and any attack registered
from outside) and writes ``<run_dir>/audit/audit.json`` (every number) and
``report.html`` (the same, readable). docs/audit.md has the threat models.

The jobs live apart: :mod:`fedkd.audit.settings` (what to attack, with which budgets),
:mod:`fedkd.audit.membership_of_run`, :mod:`fedkd.audit.inversion_of_run`,
:mod:`fedkd.audit.sli_of_run`, :mod:`fedkd.audit.epsilon_of_run` (the attacks on a run),
:mod:`fedkd.audit.records` (the run's facts, canaries and fusion weights; JSON cleaning).
"""
from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

# The built-in attacks register themselves, in this order (the order of audit.json and the report).
from . import membership_of_run, inversion_of_run, sli_of_run, epsilon_of_run  # noqa: F401
from . import dp_check, label_distribution  # noqa: F401  (issue 22: DP-SGD check, the server's label inference)
from . import upload_membership  # noqa: F401  (the server's membership inference from the uploads)
from .artifacts import RunArtifacts, load_run
from .attacks import PRIVACY_ATTACKS, AuditContext, unmet_needs
from .inversion_of_run import pick_lokt_targets
from .records import canary_series, clean_json, fusion_weights, run_facts
from .settings import QUICK_LOKT, AuditSettings

__all__ = ["AuditSettings", "QUICK_LOKT", "audit_run", "audit_loaded_run", "clean_json", "pick_lokt_targets"]

log = logging.getLogger("fedkd.audit")


def audit_loaded_run(art: RunArtifacts, settings: AuditSettings, *, cache: dict | None = None) -> tuple[dict, dict]:
    """Run every registered attack on loaded artifacts; returns (audit.json content, images for the report).

    Membership covers ``settings.clients`` (all loaded models when None); LOKT covers
    ``settings.lokt_clients``, or picks from the membership clients. ``settings.attacks`` chooses
    among the registered attacks (None = all of them); an attack whose needs the run does not meet is
    skipped, and ``skipped_attacks`` says why.
    """
    clients = sorted(settings.clients) if settings.clients is not None else sorted(art.models)
    missing = [c for c in clients + list(settings.lokt_clients or ()) if c not in art.models]
    if missing:
        raise ValueError(f"clients {missing} are not in this run or their models were not loaded "
                         f"(this run has ids 0..{art.cfg.run.num_clients - 1})")
    unknown = sorted(set(settings.attacks or ()) - set(PRIVACY_ATTACKS))
    if unknown:
        raise ValueError(f"unknown privacy attacks {unknown}; registered: {', '.join(PRIVACY_ATTACKS)}")
    log.info("auditing %s: %s on %s, clients %s", art.run_dir, art.cfg.run.algorithm, art.cfg.data.dataset, clients)
    ctx = AuditContext(art=art, settings=settings, clients=clients, cache={} if cache is None else cache)
    skipped: dict[str, str] = {}
    for name, attack in PRIVACY_ATTACKS.items():
        ctx.results[name] = None
        if settings.attacks is not None and name not in settings.attacks:
            continue
        if not attack.enabled(settings):
            continue
        unmet = unmet_needs(attack, art)
        if unmet:
            skipped[name] = f"the run has no {', '.join(unmet)}"
            continue
        ctx.results[name] = attack.run(ctx)
    result = {
        "run": run_facts(art),
        **ctx.results,
        "attacks": [{"name": a.name, "label": a.label, "description": a.description,
                     "summary": (a.summary(ctx.results[a.name]) if a.summary and ctx.results[a.name] else None)}
                    for a in PRIVACY_ATTACKS.values() if ctx.results[a.name] is not None],
        "skipped_attacks": skipped,
        "canaries": canary_series(art.rounds, art.cfg.canaries.references),
        "fusion_weights": fusion_weights(art.rounds),
        "settings": dataclasses.asdict(settings),
        "timing": {"stages": ctx.clock.stages, **ctx.clock.total()},
    }
    return clean_json(result), ctx.images


def audit_run(run_dir, settings: AuditSettings | None = None, *, out_dir=None, cache: dict | None = None,
              report: bool = True) -> dict:
    """Audit the run in ``run_dir``; write ``audit.json`` and ``report.html`` into ``out_dir``.

    Parameters
    ----------
    run_dir : str or Path
        A ``fedkd simulate`` output folder, with saved models (``save_models=true``).
    settings : AuditSettings, optional
    out_dir : str or Path, optional
        Default ``<run_dir>/audit``.
    cache : dict, optional
        Shared between calls on runs with the same data (a privacy sweep): the judge, the
        reference models and the local-only baseline are trained once.
    report : bool
        Also render ``report.html``.

    Returns
    -------
    result : dict
        The content of ``audit.json``, whose ``paths`` say where the files went.
    """
    from fedkd.run_records import write_json_atomic

    settings = settings or AuditSettings()
    to_load = None
    if settings.clients is not None:
        to_load = sorted(set(settings.clients) | set(settings.lokt_clients or ()))
    art = load_run(run_dir, to_load)
    result, images = audit_loaded_run(art, settings, cache=cache)
    out = Path(out_dir) if out_dir is not None else Path(run_dir) / "audit"
    out.mkdir(parents=True, exist_ok=True)
    result["paths"] = {"audit_json": str(out / "audit.json")}
    if report:
        from fedkd.report.audit_report import render_run_report

        result["paths"]["report_html"] = str(out / "report.html")
        render_run_report(result, images, out / "report.html")
    write_json_atomic(out / "audit.json", result)
    return result
