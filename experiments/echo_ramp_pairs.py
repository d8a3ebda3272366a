"""The server's echo ramp (``server.echo_ramp``), paired: each setting and seed with the ramp off and on, on one machine.

    python experiments/echo_ramp_pairs.py run   [--setting lp3,collude --seeds 0,1,2]
    python experiments/echo_ramp_pairs.py table

Why a study of its own: the ledgers of ``knfu_study.py`` hold rows from several sessions' machines, and BLAS
kernels round differently from one machine to the next (a re-run of one of them moved its ALMA by 0.05 points),
so a difference of a tenth of a point between two rows can be the machine's. Here both sides of a pair run one
after the other; each row records the machine (``platform``, CPU model), and ``table`` pairs only rows of the
same machine. The rule is today's KnFu default (``knfu_study.py``'s ``knfu-rel50-b0.25-ss10``) with
``server.echo_ramp`` 0 and 0.5; the settings are issue 19's (``knfu_study.SETTINGS``) and the liars study's
(three of ten, digits alpha = 0.5): echoes, exact with the echo check off, blurred with 5/10/20 % of random
rows or mixed with 10/20/40/60 % of their own honest answer (``fault.echo_with=own``), and the other
lies, which sit far from their targets and lift the round's median distance to them, the ramp's reference.

Ledger: ``experiments/results/knfu_echo_ramp_pairs.jsonl`` (a name already there for this machine is skipped).
"""
from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT.parent))

import knfu_study as ks  # noqa: E402
from fedkd.config import load_config  # noqa: E402

LEDGER = ks.RESULTS / "knfu_echo_ramp_pairs.jsonl"
RUNS = ks.RUNS / "echo_ramp_pairs"
RULE = ks.EDGE_VARIANTS["knfu-rel50-b0.25-ss10"]
RAMPS = (0.0, 0.5)
SETTINGS = ("lp3", "lp2", "lp4", "lp5", "dir0.1", "dir0.5", "collude", "swap1", "collude-m", "swap1-m",
            "lp3-val", "dir0.1-val", "fashion-dir0.1", "fashion-dir0.5", "fashion-dir0.1-val",
            "echo", "echo-n05", "echo-n10", "echo-n20", "echo-own10", "echo-own20", "echo-own40", "echo-own60",
            "random", "flip", "shift", "mimic")
# the liars study's setting (three of ten, digits alpha = 0.5): echoes, and the other lies, which sit far from
# their targets and lift the round's median distance to them (the ramp's reference)
LIARS = {"echo": {"fault.kind": "echo", "server.echo_tolerance": 0.0},
         **{f"echo-n{int(e * 100):02d}": {"fault.kind": "echo", "fault.echo_noise": e} for e in (0.05, 0.1, 0.2)},
         # echoes that mix in their own honest answer instead of noise: a client that distils almost wholly
         **{f"echo-own{int(e * 100):02d}": {"fault.kind": "echo", "fault.echo_noise": e, "fault.echo_with": "own"}
            for e in (0.1, 0.2, 0.4, 0.6)},
         **{kind: {"fault.kind": kind} for kind in ("random", "flip", "shift", "mimic")}}


def machine() -> str:
    cpu = ""
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{platform.machine()} {cpu}".strip()


def overrides(setting: str, ramp: float, seed: int) -> tuple[Path | None, dict]:
    if setting in LIARS:
        extra = {**ks.SETTINGS["dir0.5"], "fault.num_malicious": ks.LIARS, **LIARS[setting]}
    else:
        extra = ks.SETTINGS[setting]
    o = {**ks.PROTOCOL, **extra, **RULE, "server.echo_ramp": ramp, "seed": seed}
    if setting.startswith("fashion"):
        o.pop("dataset")
        return ks.FASHION, o
    return None, o


def load() -> list[dict]:
    return [json.loads(x) for x in LEDGER.read_text().splitlines() if x.strip()] if LEDGER.exists() else []


def run(settings: list[str], seeds: list[int]) -> None:
    from fedkd.cli.simulation import run_simulation

    here = machine()
    done = {(r["name"], r["machine"]) for r in load()}
    for setting in settings:
        for seed in seeds:
            for ramp in RAMPS:
                name = f"{setting}-er{ramp:g}-s{seed}"
                if (name, here) in done:
                    continue
                base, o = overrides(setting, ramp, seed)
                out = RUNS / name
                shutil.rmtree(out, ignore_errors=True)
                started = time.perf_counter()
                summary = run_simulation(load_config(base, [f"{k}={v}" for k, v in o.items()]), out, progress=False)
                row = {"name": name, "setting": setting, "ramp": ramp, "seed": seed, "machine": here,
                       "seconds": time.perf_counter() - started, "overrides": o,
                       **ks.measure(out, o, summary)}
                with open(LEDGER, "a") as fh:
                    fh.write(json.dumps(row) + "\n")
                print(f"{name}: ALMA {row['alma']:.4f} global {row['global_acc']:.4f}", flush=True)


def _worst_liar(rows) -> float:
    """The largest liar / honest-peer weight ratio over these runs' rounds 2 on (round 1 is honest for echoes)."""
    return max(max(r["liar_ratio_per_round"][1:], default=0.0) for r in rows)


def table() -> str:
    rows = {(r["machine"], r["setting"], r["seed"], r["ramp"]): r for r in load()}
    lines = ["| setting | ALMA % (the honest clients' where there are liars), no ramp → ramp (mean) | ramp − no ramp, per seed | global %, ramp − no ramp | "
             "liars / an honest peer's weight, rounds 2–5 (largest), no ramp → ramp | seeds |",
             "|---|---|---|---|---|---|"]
    for setting in SETTINGS:
        pairs = [(rows[k[:3] + (0.0,)], rows[k]) for k in sorted(rows) if k[1] == setting and k[3] == 0.5
                 and k[:3] + (0.0,) in rows]
        if not pairs:
            continue
        off, on = zip(*pairs)
        key = "alma_honest" if off[0].get("liar_ratio_per_round") else "alma"  # where there are liars: theirs aside
        d_alma = [100 * (b[key] - a[key]) for a, b in pairs]
        d_glob = [100 * (b["global_acc"] - a["global_acc"]) for a, b in pairs]
        liars = f"{_worst_liar(off):.2f} → {_worst_liar(on):.2f}" if off[0].get("liar_ratio_per_round") else "–"
        lines.append(f"| {setting} | {100 * np.mean([r[key] for r in off]):.2f} → "
                     f"{100 * np.mean([r[key] for r in on]):.2f} | {', '.join(f'{d:+.2f}' for d in d_alma)} | "
                     f"{', '.join(f'{d:+.2f}' for d in d_glob)} | {liars} | "
                     f"{','.join(str(p[0]['seed']) for p in pairs)} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["run", "table"])
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--setting", default="", help="comma-separated, of: " + ", ".join(SETTINGS))
    args = parser.parse_args()
    if args.command == "run":
        settings = [s for s in args.setting.split(",") if s] or list(SETTINGS)
        unknown = sorted(set(settings) - set(SETTINGS))
        if unknown:
            parser.error(f"unknown settings {unknown}; known: {', '.join(SETTINGS)}")
        run(settings, [int(s) for s in args.seeds.split(",")])
    print(table())


if __name__ == "__main__":
    main()
