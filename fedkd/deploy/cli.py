"""``fedkd certs``, ``fedkd federation``, ``fedkd register`` and ``fedkd submit``: the deployment commands.

``fedkd/cli.py`` adds these parsers with :func:`add_commands` and hands the
parsed arguments to :func:`run_command`.
"""
from __future__ import annotations

import argparse
import signal
import sys
import tempfile
import time
from pathlib import Path

from fedkd.config import load_config

COMMANDS = ("certs", "federation", "register", "submit")


def add_commands(sub) -> None:
    """Add the deployment sub-commands to ``fedkd``'s sub-parser set."""
    certs = sub.add_parser("certs", help="make a development CA, the SuperLink's certificate and SuperNode keys")
    certs.add_argument("--out", required=True, help="folder to write into (an existing CA there is reused)")
    certs.add_argument("--san", action="append", default=[], metavar="NAME",
                       help="a DNS name or IP the SuperLink is reached by (repeatable); "
                            "localhost and 127.0.0.1 are always covered")
    certs.add_argument("--nodes", type=int, default=0, help="SuperNode key pairs to make (keys/node-<i>)")
    certs.add_argument("--days", type=int, default=365, help="certificate lifetime in days")

    fed = sub.add_parser("federation", help="run once on a local federation of real Flower processes "
                                            "(SuperLink + N SuperNodes on 127.0.0.1, TLS and node auth on)")
    _config_args(fed)
    fed.add_argument("--nodes", type=int, help="SuperNodes to start (default: the config's num_clients)")
    fed.add_argument("--workdir", help="folder for credentials, logs, state and the run record "
                                       "(default runs/federation-<time>)")
    fed.add_argument("--credentials", help="use this `fedkd certs` folder instead of making one")
    fed.add_argument("--data", help="a `fedkd export` folder: node i reads only DIR/node-<i>, every party reads "
                                    "DIR/transfer, and the server no dataset at all (docs/deploy.md)")
    tls = fed.add_mutually_exclusive_group()
    tls.add_argument("--tls", dest="tls", action="store_true", default=True, help="TLS on every link (default)")
    tls.add_argument("--insecure", dest="tls", action="store_false", help="no TLS (implies --no-auth)")
    fed.add_argument("--auth", action=argparse.BooleanOptionalAction, default=None,
                     help="SuperNode authentication (default: on with TLS)")
    fed.add_argument("--timeout", type=float, help="seconds to wait for the run (default from the config's "
                                                   "timeouts)")

    register = sub.add_parser("register", help="register SuperNode public keys with a running SuperLink "
                                               "(keys it knows already are skipped)")
    _connection_args(register)
    register.add_argument("keys", nargs="+", metavar="KEY.pub", help="OpenSSH public keys of SuperNodes")
    register.add_argument("--registry", metavar="FILE", help="also bind client i to node-<i>.pub in this identity "
                                                           "registry (server.identity_registry)")

    submit = sub.add_parser("submit", help="run the app on a running SuperLink (flwr run + wait + log)")
    _config_args(submit)
    _connection_args(submit)
    submit.add_argument("--register", nargs="*", default=[], metavar="KEY.pub",
                        help="register these SuperNode public keys first (keys already known are skipped)")
    submit.add_argument("--app", help="the Flower app folder (default: $FEDKD_APP_DIR or this fedkd project)")
    submit.add_argument("--no-wait", action="store_true", help="print the run id and return")
    submit.add_argument("--timeout", type=float, help="seconds to wait for the run")


def _connection_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--superlink", required=True, metavar="HOST:PORT",
                   help="the SuperLink's control API: its --host/--port (8000 by default), not the Fleet port "
                        "the SuperNodes use")
    security = p.add_mutually_exclusive_group(required=True)
    security.add_argument("--ca", help="CA certificate that signed the SuperLink's certificate")
    security.add_argument("--insecure", action="store_true", help="plain HTTP (a SuperLink started --insecure)")
    p.add_argument("--flwr-home", help="FLWR_HOME for the connection file (default: a temporary folder)")


def _config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="TOML config file")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="override one config key (repeatable)")
    p.add_argument("--quiet", action="store_true", help="print only the outcome")


def run_command(args) -> int:
    """Run one deployment command: 0 on success, 1 if the run failed, 2 if it could not start."""
    from fedkd.config import ConfigError
    from fedkd.deploy.credentials import CredentialError
    from fedkd.deploy.flwr_cli import FlwrCliError
    from fedkd.deploy.processes import ProcessFailed

    # SIGTERM (docker stop, kill) unwinds like Ctrl-C, so every process we started is stopped.
    signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        if args.command == "certs":
            return cmd_certs(args)
        if args.command == "federation":
            return cmd_federation(args)
        if args.command == "register":
            return cmd_register(args)
        return cmd_submit(args)
    except (ConfigError, CredentialError) as exc:
        print(f"fedkd {args.command}: refused before starting anything: {exc}", file=sys.stderr)
        return 2
    except (FlwrCliError, ProcessFailed) as exc:
        print(f"fedkd {args.command}: {exc}", file=sys.stderr)
        return 1


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


def cmd_certs(args) -> int:
    from fedkd.deploy.credentials import make_credentials

    from fedkd.node_identity import write_registry

    made = make_credentials(args.out, sans=args.san, nodes=args.nodes, days=args.days)
    for path in made.created:
        print(f"wrote {path}")
    if made.node_keys:
        registry = write_registry(Path(args.out) / "identities.json", {k.index: k.public for k in made.node_keys})
        print(f"wrote {registry}: client i is bound to keys/node-<i>.pub (server.identity_registry)")
    kept = len(made.node_keys) - sum(1 for k in made.node_keys if k.private in made.created)
    if kept:
        print(f"kept {kept} existing node key pair(s)")
    print(f"CA: {made.ca_cert} (give it to every SuperNode and to `flwr`); keep {made.ca_key} private")
    return 0


def cmd_federation(args) -> int:
    from fedkd.config import ConfigError
    from fedkd.deploy.local import LocalSetup, run_local_federation

    overrides = list(args.sets)
    if args.nodes is not None:
        overrides.append(f"num_clients={args.nodes}")
    cfg = load_config(args.config, overrides)
    auth = args.tls if args.auth is None else args.auth
    if auth and not args.tls:
        raise ConfigError("--auth needs TLS; drop --insecure or use --no-auth")
    workdir = Path(args.workdir) if args.workdir else Path("runs") / f"federation-{time.strftime('%Y%m%d-%H%M%S')}"
    setup = LocalSetup(nodes=cfg["num_clients"], workdir=workdir, tls=args.tls, auth=auth,
                       credentials=Path(args.credentials) if args.credentials else None,
                       data=Path(args.data) if args.data else None)
    say = (lambda _msg: None) if args.quiet else (lambda msg: print(f"[fedkd federation] {msg}", flush=True))
    try:
        result = run_local_federation(cfg, setup, timeout=args.timeout, say=say)
    except KeyboardInterrupt:
        print("interrupted; every process was stopped", file=sys.stderr)
        return 130
    print(f"run {result.run_id}: {result.status}; log {result.log_path}")
    if result.metrics_text:
        (result.out_dir / "metrics.prom").write_text(result.metrics_text)
        print(f"last /metrics scrape in {result.out_dir / 'metrics.prom'}")
    if not result.ok:
        what = "failed (the reasons are above)" if result.summary and result.summary.get("failure") \
            else "did not complete"
        print(f"the run {what}; see {result.log_path} and {workdir / 'logs'}", file=sys.stderr)
        return 1
    if not args.quiet:
        from fedkd.report.run_table import print_run_table

        print_run_table(result.summary, result.out_dir)
    return 0


def _connect(args):
    """A FlwrCli for ``--superlink`` with ``--ca``/``--insecure``; the CA file is checked first."""
    import os

    from fedkd.deploy.credentials import check_tls_files
    from fedkd.deploy.flwr_cli import FlwrCli, flower_env, write_connection
    from fedkd.deploy.local import NO_NETWORK_ENV

    if args.ca:
        check_tls_files(args.ca)
    home = Path(args.flwr_home) if args.flwr_home else Path(tempfile.mkdtemp(prefix="fedkd-flwr-home-"))
    write_connection(home, "fedkd", args.superlink, root_certificates=Path(args.ca) if args.ca else None,
                     insecure=args.insecure)
    return FlwrCli(flower_env(dict(os.environ), **NO_NETWORK_ENV, FLWR_HOME=str(home.resolve())), "fedkd")


def _register(cli, keys: list[Path]) -> None:
    from fedkd.deploy.flwr_cli import FlwrCliError

    for key in keys:
        try:
            print(f"registered {key}: node id {cli.register(key)}", flush=True)
        except FlwrCliError as exc:
            if "already in use" not in str(exc):
                raise
            print(f"{key} is registered already", flush=True)


def _check_keys(paths: list[str]) -> list[Path]:
    from fedkd.deploy.credentials import check_public_key

    for path in paths:
        check_public_key(path)
    return [Path(p) for p in paths]


def cmd_register(args) -> int:
    import re

    from fedkd.config import ConfigError
    from fedkd.node_identity import write_registry

    keys = _check_keys(args.keys)
    bindings = {}
    if args.registry:
        for key in keys:
            match = re.fullmatch(r"node-(\d+)\.pub", key.name)
            if not match:
                raise ConfigError(f"--registry binds client i to a key named node-<i>.pub; {key} is not named so")
            bindings[int(match.group(1))] = key
    _register(_connect(args), keys)
    if bindings:
        print(f"wrote {write_registry(args.registry, bindings)}: clients {sorted(bindings)} bound to their keys")
    return 0


def cmd_submit(args) -> int:
    from fedkd.deploy.flwr_cli import FINISHED_OK
    from fedkd.deploy.local import default_app_dir, default_timeout
    from fedkd.deploy.run_config import app_config_keys, run_config_string

    cfg = load_config(args.config, args.sets)
    app = Path(args.app).resolve() if args.app else default_app_dir()
    run_config = run_config_string(cfg, app_config_keys(app))
    keys = _check_keys(args.register)
    cli = _connect(args)
    _register(cli, keys)
    run_id = cli.submit(app, run_config)
    print(f"run {run_id} submitted to {args.superlink}", flush=True)
    if args.no_wait:
        return 0
    try:
        info = cli.wait(run_id, args.timeout or default_timeout(cfg))
    except KeyboardInterrupt:
        print(f"stopped waiting; the run goes on (stop it with `flwr stop {run_id}`)", file=sys.stderr)
        return 130
    log = cli.log(run_id)
    print(log if not args.quiet else "\n".join(log.splitlines()[-5:]))
    print(f"run {run_id}: {info.get('status')}")
    return 0 if info.get("status") == FINISHED_OK else 1
