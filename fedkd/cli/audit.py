"""``fedkd audit``: audit a finished run, a privacy sweep, or train a run and audit it.

    fedkd audit RUN_DIR                  # after `fedkd simulate --out RUN_DIR`
    fedkd audit SWEEP_DIR                # after `fedkd privacy-sweep --out SWEEP_DIR`
    fedkd audit --config FILE [--set K=V ...] [--out RUN_DIR]   # simulate, then audit

Writes ``audit/report.html`` and ``audit/audit.json`` into the audited folder (or --out
when auditing an existing folder). ``fedkd/cli.py`` adds the subcommand; this module
imports no torch at import time, so building the parser stays fast.
"""
from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

from fedkd.config import ConfigError

__all__ = ["add_arguments", "cmd_audit", "settings_from_args"]


def add_arguments(p) -> None:
    """The ``fedkd audit`` options (called by ``fedkd.cli.build_parser``)."""
    p.add_argument("path", nargs="?", help="a run folder (fedkd simulate --out) or a privacy-sweep folder")
    p.add_argument("--config", help="TOML config: simulate this run first, then audit it")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="override one config key of the run to simulate (with --config or alone)")
    p.add_argument("--out", help="with PATH: where the audit goes (default PATH/audit); "
                                 "otherwise: the run folder to simulate into (default runs/<run-id>)")
    p.add_argument("--clients", help="comma-separated client ids for membership inference (default: all)")
    p.add_argument("--lokt-clients", help="comma-separated LOKT targets (default: the --lokt-targets clients "
                                          "with the most never-held classes)")
    p.add_argument("--lokt-targets", type=int, help="how many LOKT targets to pick (default 2; 1 with --quick; "
                                                    "0 = no inversion)")
    p.add_argument("--lokt-steps", type=int, help="T-ACGAN training steps (the main LOKT budget; default 1500, "
                                                  "400 with --quick)")
    p.add_argument("--reference-models", type=int, help="reference models per client (default 4, 2 with --quick)")
    p.add_argument("--no-local-baseline", action="store_true",
                   help="skip the LOKT baseline on a model trained without federation")
    p.add_argument("--quick", action="store_true",
                   help="small budgets: a first look (about 20 s of CPU on the default digits run)")
    p.add_argument("--device", default="cpu", help="'cpu', 'auto' or 'cuda[:N]' for the attacks (default cpu)")
    p.add_argument("--seed", type=int, default=0, help="seed of the attacks (default 0)")
    p.add_argument("--attacks", default=None, help="comma-separated registered privacy attacks to run (default: "
                   "all; fedkd.audit.attacks.PRIVACY_ATTACKS, docs/audit.md)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads (default 1: the audit's models are tiny, and on a busy machine more "
                        "threads mostly spin; 0 = torch's default, one per core)")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.add_argument("--verbose", action="store_true", help="show Flower's and Ray's logs while simulating")


def _ids(text: str | None, option: str) -> tuple[int, ...] | None:
    if text is None:
        return None
    try:
        ids = tuple(sorted({int(part) for part in text.split(",") if part.strip()}))
    except ValueError:
        raise ConfigError(f"{option}: expected comma-separated client ids, got {text!r}") from None
    if not ids or min(ids) < 0:
        raise ConfigError(f"{option}: expected non-negative client ids, got {text!r}")
    return ids


def settings_from_args(args):
    """AuditSettings from the parsed options (``--quick`` first, then the explicit ones)."""
    from fedkd.audit.run import AuditSettings

    from fedkd.training import resolve_device

    try:
        resolve_device(args.device)
    except (ValueError, RuntimeError) as exc:
        raise ConfigError(f"--device: {exc}") from None
    changes = dict(clients=_ids(args.clients, "--clients"), lokt_clients=_ids(args.lokt_clients, "--lokt-clients"),
                   device=args.device, seed=args.seed, progress=not args.quiet,
                   local_baseline=not args.no_local_baseline)
    if args.attacks is not None:
        from fedkd.audit.attacks import PRIVACY_ATTACKS

        names = tuple(n.strip() for n in args.attacks.split(",") if n.strip())
        unknown = [n for n in names if n not in PRIVACY_ATTACKS]
        if unknown:
            raise ConfigError(f"--attacks: unknown {unknown}; registered: {', '.join(PRIVACY_ATTACKS)}")
        changes["attacks"] = names
    for option, field in (("lokt_targets", "lokt_targets"), ("reference_models", "reference_models")):
        value = getattr(args, option)
        if value is not None:
            if value < 0:
                raise ConfigError(f"--{option.replace('_', '-')}: must be >= 0, got {value}")
            changes[field] = value
    settings = AuditSettings.quick(**changes) if args.quick else AuditSettings(**changes)
    if args.lokt_steps is not None:
        if args.lokt_steps < 1:
            raise ConfigError(f"--lokt-steps: must be >= 1, got {args.lokt_steps}")
        settings = dataclasses.replace(
            settings, lokt=dataclasses.replace(settings.lokt, gan_steps=args.lokt_steps, gan_warmup=None))
    return settings


def _print_summary(result: dict, sweep: bool) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(stderr=False)
    if sweep:
        table = Table(title="privacy sweep audit")
        for col in ("run", "epsilon", "ALMA", "worst MIA AUC", "RMIA TPR@0.1%", "LOKT top-1", "LOKT never-held",
                    "soft-label inversion", "upload MIA AUC", "empirical epsilon"):
            table.add_column(col, justify="right")
        for r in result["rows"]:
            table.add_row(r["run"], _fmt(r.get("epsilon")), _fmt(r.get("alma")), _fmt(r.get("mia_worst_auc")),
                          _fmt(r.get("rmia_worst_tpr_at_0.1fpr")), _fmt(r.get("lokt_acc_top1")),
                          _fmt(r.get("lokt_cross_client_acc_top1")), _fmt(r.get("sli_acc_top1")),
                          _fmt(r.get("upload_mia_worst_auc")), _fmt(r.get("empirical_epsilon")))
        console.print(table)
    else:
        if result.get("membership"):
            table = Table(title="membership inference: worst client per attack")
            for col in ("attack", "client", "AUC", "TPR@0.1%FPR", "TPR@1%FPR", "mean AUC"):
                table.add_column(col, justify="right")
            for attack, w in result["membership"]["worst_client"].items():
                table.add_row(attack, w["client"], _fmt(w["auc"]), _fmt(w["tpr_at_0.1fpr"]),
                              _fmt(w["tpr_at_1fpr"]), _fmt(w["mean"]))
            console.print(table)
        inv = result.get("inversion")
        if inv:
            console.print(
                f"LOKT: top-1 {_fmt(inv['attack_acc_top1'])} (top-5 {_fmt(inv['attack_acc_top5'])}, chance "
                f"{_fmt(inv['chance'])}, random latents {_fmt(inv['random_latent_acc_top1'])}, local-only model "
                f"{_fmt(inv['local_only_acc_top1'])}); never-held classes {_fmt(inv['cross_client_attack_acc_top1'])} "
                f"(local-only {_fmt(inv['cross_client_baselines']['local_only'])}, random latents "
                f"{_fmt(inv['cross_client_baselines']['random_latent'])}); {inv['queries']:,} queries per attack")
        rmia = {cid: r["rmia"] for cid, r in (result.get("membership") or {"per_client": {}})["per_client"].items()
                if "rmia" in r}
        if rmia:
            worst = max(rmia, key=lambda c: rmia[c]["auc"])
            console.print(f"RMIA (offline): worst client {worst}, AUC {_fmt(rmia[worst]['auc'])}, TPR at 0.1 % / 1 % FPR "
                          f"{_fmt(rmia[worst]['tpr_at_0.1fpr'])} / {_fmt(rmia[worst]['tpr_at_1fpr'])}")
        sli = result.get("soft_label_inversion")
        if sli:
            v = sli["variants"]
            console.print(f"soft-label inversion by the server: top-1 {_fmt(sli['attack_acc_top1'])} ({sli['as_run']} "
                          f"uploads; plain {_fmt(v['plain']['attack_acc_top1'])}, swing {_fmt(v['swing']['attack_acc_top1'])}, "
                          f"chance {_fmt(sli['chance'])})")
        emp = result.get("empirical_epsilon")
        if emp:
            console.print(f"empirical epsilon (one-run audit, 95 %): >= {_fmt(emp['lower_bound'])} "
                          f"({emp['correct']}/{emp['guesses']} guesses right on {emp['canaries']} canaries); accounted "
                          f"{'none (no guarantee)' if emp['accounted'] is None else _fmt(emp['accounted'])}")
        from fedkd.report.audit_report import SECTIONS_IN_TEMPLATE

        for attack in result.get("attacks", []):  # every other registered attack, by its own summary line
            if attack["name"] not in SECTIONS_IN_TEMPLATE and attack.get("summary"):
                console.print(f"{attack['label']}: {attack['summary']}")
        for name, why in result.get("skipped_attacks", {}).items():
            console.print(f"not run: {name} ({why})")
    console.print(f"audit took {result['timing']['cpu_seconds']:.0f} s CPU, {result['timing']['wall_seconds']:.0f} s "
                  f"wall; wrote {result['paths']['report_html']} and {result['paths']['audit_json']}")


def _show_progress_lines() -> None:
    import logging

    logger = logging.getLogger("fedkd.audit")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("[audit %(asctime)s] %(message)s", "%H:%M:%S"))
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)


def _fmt(value) -> str:
    return "-" if value is None else f"{value:.3f}"


def cmd_audit(args) -> int:
    """Run ``fedkd audit``; returns the exit status."""
    from fedkd.audit.artifacts import is_run_dir, is_sweep_dir

    settings = settings_from_args(args)
    if settings.progress:  # the audit's stage lines (logger fedkd.audit) on stderr
        _show_progress_lines()
    if args.threads < 0:
        raise ConfigError(f"--threads: must be >= 0, got {args.threads}")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    if args.path and (args.config or args.sets):
        raise ConfigError("give either a folder to audit or --config/--set for a run to simulate, not both")
    if not args.path and not (args.config or args.sets):
        raise ConfigError("nothing to audit: give a run folder, a privacy-sweep folder, or --config FILE")
    try:
        if args.path:
            path = Path(args.path)
            if is_sweep_dir(path):
                from fedkd.audit.sweep import audit_sweep

                result = audit_sweep(path, settings, out_dir=args.out)
                sweep = True
            elif is_run_dir(path):
                from fedkd.audit.run import audit_run

                result, sweep = audit_run(path, settings, out_dir=args.out), False
            else:
                raise FileNotFoundError(f"{path} is neither a run folder (config.json) nor a privacy-sweep "
                                        "folder (sweep.json)")
        else:
            result, sweep = _simulate_then_audit(args, settings), False
    except (ValueError, RuntimeError) as exc:
        if isinstance(exc, ConfigError):
            raise
        print(f"fedkd audit: {exc}", file=sys.stderr)
        return 2
    if not args.quiet:
        _print_summary(result, sweep)
    return 0


def _simulate_then_audit(args, settings) -> dict:
    from fedkd.config import load_config
    from fedkd.run_records import new_run_dir
    from server.simulate import simulate

    from fedkd.audit.run import audit_run

    # The audit needs the clients' final models, whatever the config file says.
    cfg = load_config(args.config, list(args.sets) + ["save_models=true"])
    out = Path(args.out) if args.out else new_run_dir()
    simulate(cfg, str(out), progress=not args.quiet, verbose=args.verbose)
    return audit_run(out, settings)
