"""The ``fedkd`` command line: the top layer, the only part of ``fedkd`` that may import the apps."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from fedkd.cli import audit as audit_command
from fedkd.cli import check_data as check_data_command
from fedkd.cli.simulation import run_simulation
from fedkd.config import ConfigError, algorithms, describe_keys, load_config
from fedkd.deploy import cli as deploy_cli
from fedkd.run_records import new_run_dir, write_json_atomic
from fedkd.report.run_table import print_run_table


def _config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="TOML config file")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="override one config key (repeatable), e.g. --set rounds=3")
    p.add_argument("--out", help="output folder (default runs/<run-id>)")
    p.add_argument("--quiet", action="store_true", help="no progress bar or tables")
    p.add_argument("--verbose", action="store_true", help="show Flower's and Ray's logs")
    p.add_argument("--data", metavar="DIR", help="run on folders: node i reads only DIR/node-<i>, every party "
                                                 "DIR/transfer (a `fedkd export` folder; sets data_dir)")


def _run_config(args, extra: list[str] = ()):
    """The config of --config/--set, with --data as ``data_dir`` (absolute: simulated nodes may run elsewhere)."""
    sets = list(args.sets) + list(extra)
    if args.data:
        sets.append(f"data_dir={Path(args.data).resolve()}")
    return load_config(args.config, sets)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fedkd", description="Federated knowledge distillation on Flower.")
    sub = parser.add_subparsers(dest="command", required=True)
    sim = sub.add_parser("simulate", help="run one experiment on Flower's simulation engine")
    _config_args(sim)
    sim.add_argument("--resume", action="store_true",
                     help="continue the run in --out from its last checkpoint (its config, then --config/--set)")
    cmp_ = sub.add_parser("compare", help="run several algorithms on identical data and seeds")
    _config_args(cmp_)
    cmp_.add_argument("--algorithms", default="local,fedmd,dsfl,knfu,fedavg",
                      help="comma-separated; fedavg is skipped for heterogeneous models")
    sweep = sub.add_parser("privacy-sweep", help="plain distillation vs swing at several noise levels")
    _config_args(sweep)
    sweep.add_argument("--noise", default="0.05,0.2,0.5,1.0",
                       help="comma-separated swing noise scales (Gaussian sigma or Laplace b)")
    export = sub.add_parser("export", help="write a simulated federation as per-node folders for real hosts "
                                           "(transfer/, node-<i>/{train,test}/, global_test/)")
    export.add_argument("--config", help="TOML config file")
    export.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                        help="override one config key (repeatable)")
    export.add_argument("--out", required=True, help="folder to write (must not exist or be empty)")
    sub.add_parser("keys", help="list every config key with its default")
    audit_command.add_arguments(sub.add_parser(  # docs/audit.md
        "audit", help="membership inference and model inversion on a run's models; writes an HTML report"))
    check_data_command.add_arguments(sub.add_parser(  # docs/deploy.md §2a
        "check-data", help="check a node's data folder (or a folder of node folders) offline: every problem at once"))
    deploy_cli.add_commands(sub)  # certs, federation, submit (docs/deploy.md)
    return parser


def cmd_simulate(args) -> int:
    if args.resume:
        from server.checkpoint import resume_config

        if not args.out:
            raise ConfigError("--resume needs --out: the folder of the run to continue")
        cfg = resume_config(args.out, args.config, args.sets)  # checked before Ray starts
    else:
        cfg = _run_config(args)
    out = Path(args.out) if args.out else new_run_dir()
    summary = run_simulation(cfg, out, progress=not args.quiet, verbose=args.verbose)
    if not args.quiet:
        print_run_table(summary, out)
    return 1 if summary.get("failure") else 0  # the reasons were printed as the rounds went


def cmd_compare(args) -> int:
    from fedkd.report.compare import plot_alma, print_compare_table

    base = _run_config(args)
    chosen = [a.strip() for a in args.algorithms.split(",") if a.strip()]
    for name in chosen:
        if name not in algorithms():
            raise ConfigError(f"--algorithms: unknown algorithm {name!r}; known: {', '.join(algorithms())}")
    out = Path(args.out) if args.out else new_run_dir(name=None)
    results = {}
    for name in chosen:
        if name == "fedavg" and len(set(base["models"])) > 1:
            print(f"skipping fedavg: it needs one architecture, models={base['models']}", file=sys.stderr)
            continue
        summary = run_simulation(base.replace(algorithm=name), out / name, progress=not args.quiet,
                                 verbose=args.verbose)
        results[name] = summary
    failed = {name: s["failure"] for name, s in results.items() if s.get("failure")}
    write_json_atomic(out / "compare.json", {"config": dict(base), "results": results, "failed": failed})
    plot_alma(results, out / "alma.png")
    if not args.quiet:
        print_compare_table(results)
        print(f"wrote {out / 'compare.json'} and {out / 'alma.png'}")
    for name, why in failed.items():
        print(f"fedkd compare: {name} FAILED: {why}; its numbers are not results", file=sys.stderr)
    return 1 if failed else 0


def cmd_privacy_sweep(args) -> int:
    from fedkd.report.privacy_sweep import plot_sweep, print_sweep_table, sweep_rows, sweep_settings

    base = _run_config(args, ["canaries.enabled=true"])
    try:
        levels = [float(x) for x in args.noise.split(",") if x.strip()]
    except ValueError:
        raise ConfigError(f"--noise: expected comma-separated numbers, got {args.noise!r}") from None
    out = Path(args.out) if args.out else new_run_dir()
    results = {}
    for i, (label, overrides) in enumerate(sweep_settings(levels)):
        cfg = base.replace(**{k.replace(".", "__"): v for k, v in overrides.items()})
        results[label] = run_simulation(cfg, out / f"run{i}", progress=not args.quiet, verbose=args.verbose)
    failed = {label: s["failure"] for label, s in results.items() if s.get("failure")}
    rows = sweep_rows(results)
    write_json_atomic(out / "sweep.json", {"config": dict(base), "rows": rows, "results": results})
    plot_sweep(rows, out / "privacy_sweep.png")
    if not args.quiet:
        print_sweep_table(rows)
        print(f"wrote {out / 'sweep.json'} and {out / 'privacy_sweep.png'}")
    for label, why in failed.items():
        print(f"fedkd privacy-sweep: {label} FAILED: {why}", file=sys.stderr)
    return 1 if failed else 0


def cmd_export(args) -> int:
    from fedkd.data import build_federation
    from fedkd.data.export import ExportError, export_federation

    cfg = load_config(args.config, args.sets)
    try:
        manifest = export_federation(build_federation(cfg.federation), args.out)
    except ExportError as exc:
        raise ConfigError(f"fedkd export: {exc}") from None
    counts = ", ".join(f"{n.name}: {n.train} train / {n.test} test" for n in manifest.nodes)
    print(f"wrote {args.out}: transfer set of {manifest.transfer_size} (fingerprint {manifest.transfer_fingerprint}); "
          f"{counts}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "keys":
            print(describe_keys())
            return 0
        if args.command == "simulate":
            return cmd_simulate(args)
        if args.command == "export":
            return cmd_export(args)
        if args.command == "compare":
            return cmd_compare(args)
        if args.command == "privacy-sweep":
            return cmd_privacy_sweep(args)
        if args.command == "audit":
            return audit_command.cmd_audit(args)
        if args.command == "check-data":
            return check_data_command.cmd_check_data(args)
        if args.command in deploy_cli.COMMANDS:
            return deploy_cli.run_command(args)
    except ConfigError as exc:
        print(f"fedkd: config error: {exc}", file=sys.stderr)
        return 2
    except FileNotFoundError as exc:
        print(f"fedkd: {exc}", file=sys.stderr)
        return 2
    return 1


if __name__ == "__main__":
    raise SystemExit(main())
