"""Node loss on a real local federation: kill one SuperNode mid-round, restart it, watch the rounds.

    .venv/bin/python experiments/deploy_node_loss.py                    # 5 nodes, TLS + node auth
    .venv/bin/python experiments/deploy_node_loss.py --no-auth --rounds 4

What it does: starts a SuperLink and N SuperNodes on 127.0.0.1 (fedkd.deploy.local), submits a run,
SIGKILLs the SuperNode of ``--victim`` while its ClientApp works on round ``--kill-round``, starts it
again with the same command (with node authentication the SuperLink refuses the same key until it has
missed two heartbeats, about a minute, so the restart is retried), and prints one line per round:
which nodes replied, which were missing, and which clients distilled toward targets. It writes the
table to ``<workdir>/node_loss.json``. docs/deploy.md quotes its numbers.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from fedkd.config import make_config
from fedkd.deploy.local import LocalFederation, LocalSetup, round_records
from fedkd.deploy.processes import descendants, is_clientapp, wait_until


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--victim", type=int, default=4, help="partition whose SuperNode is killed")
    parser.add_argument("--kill-round", type=int, default=2)
    parser.add_argument("--reply-timeout", type=float, default=120.0)
    parser.add_argument("--auth", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--workdir", default=f"runs/node-loss-{time.strftime('%Y%m%d-%H%M%S')}")
    args = parser.parse_args()

    started = time.monotonic()

    def say(message: str) -> None:
        print(f"[{time.monotonic() - started:6.1f} s] {message}", flush=True)

    cfg = make_config({"num_clients": args.nodes, "rounds": args.rounds, "models": "mlp", "transfer_size": 100,
                       "revisit_epochs": 2, "digest_epochs": 1, "local_test_size": 50, "global_test_size": 300,
                       "server.reply_timeout": args.reply_timeout})
    events = {}
    with LocalFederation(LocalSetup(nodes=args.nodes, workdir=Path(args.workdir), auth=args.auth), say=say) as fed:
        fed.start()
        run_id, cfg = fed.submit(cfg)
        out = Path(cfg["out"])
        victim = fed.nodes[args.victim]
        wait_until(lambda: len(round_records(out)) >= args.kill_round - 1
                   and any(is_clientapp(c.pid) for c in descendants(victim.pid)),
                   1800, f"round {args.kill_round} to reach node {args.victim}", [victim], poll=0.3)
        fed.kill_node(args.victim)
        events["killed_at"] = time.monotonic() - started
        say(f"SIGKILLed the SuperNode of partition {args.victim} during round {args.kill_round}")
        fed.restart_node(args.victim, timeout=300)  # retried while the SuperLink refuses the key (auth)
        events["restarted_at"] = time.monotonic() - started
        say(f"restarted partition {args.victim}'s SuperNode")
        result = fed.wait(run_id, cfg, timeout=3600)

    rows = []
    for r in round_records(out):
        rows.append({k: r.get(k) for k in ("round", "nodes", "replies", "missing", "rejected", "round_seconds",
                                           "alma", "distilled_clients")}
                    | {"replied": sorted(int(p) for p in r.get("per_client_local_acc", {}))})
    print(f"\nrun {run_id}: {result.status}; SIGKILL at {events['killed_at']:.0f} s, restart accepted at "
          f"{events['restarted_at']:.0f} s")
    print(f"{'round':>5} {'nodes':>5} {'valid':>5} {'missing':>7} {'rejected':>22} {'seconds':>7}  replied / distilled")
    for row in rows:
        print(f"{row['round']:>5} {row['nodes']:>5} {row['replies']:>5} {row['missing']:>7} "
              f"{json.dumps(row['rejected']):>22} {row['round_seconds']:>7.1f}  {row['replied']} / "
              f"{row['distilled_clients']}")
    (Path(args.workdir) / "node_loss.json").write_text(json.dumps(
        {"args": vars(args), "status": result.status, "events": events, "rounds": rows}, indent=2))


if __name__ == "__main__":
    main()
