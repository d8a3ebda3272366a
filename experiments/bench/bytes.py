"""Communication: bytes per client-round of soft labels (per wire format) vs FedAvg's weights, with ALMA.

Every variant runs through Flower's simulation on the same data (digits, Dirichlet alpha = 0.1, the
same seeds and clients) with the default CNN on every client (``models=cnn_small``; FedAvg needs one
architecture). The distillation algorithm (``--algorithm``, default KnFu) runs once per wire format
(``wire_dtype``, ``wire_topk``) with the protocol chosen on the validation split (``order=joint``,
``distill_weight=0.3``, docs/results.md); FedAvg exchanges the CNN's weights both ways; local-only
training is the reference for what ALMA is without any knowledge exchange (its bytes are not compared).

Bytes are whole serialised messages as the server counts them (``bytes_up_per_client`` +
``bytes_down_per_client`` in metrics.jsonl: payload, metrics and the run config), the median over
rounds 2..R (round 1 of distillation sends no targets); the bare payload (arrays only) is reported
beside them. ALMA is the mean over ``--seeds`` (one seed moves it by about a point).

    .venv/bin/python experiments/bench/bytes.py                     # 10 clients, 5 rounds, 3 seeds (~15 min)
    .venv/bin/python experiments/bench/bytes.py --seeds 0 --formats float32,uint8:1
    .venv/bin/python experiments/bench/bytes.py --algorithm dsfl --set order=digest-revisit

ratio = FedAvg bytes / bytes of the smallest format whose mean ALMA is at least FedAvg's; goal >= 20.
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

import _common  # noqa: F401  (sys.path and environment)
from _common import finish, median, say

GOAL_RATIO = 20.0
DEFAULT_FORMATS = "float32,float16,uint8,uint8:2,uint8:1"
PROTOCOL = {"order": "joint", "distill_weight": 0.3}  # docs/results.md, "How the settings were chosen"


def parse_format(text: str) -> tuple[str, int]:
    """``"uint8:2"`` -> ("uint8", 2); ``"float16"`` -> ("float16", 0)."""
    dtype, _, k = text.partition(":")
    return dtype.strip(), int(k or 0)


def run(cfg, out: Path) -> dict:
    """One simulation: its ALMA, global accuracy and median bytes per client-round."""
    from fedkd.run_records import read_rounds
    from server.simulate import simulate

    summary = simulate(cfg, str(out), progress=False)
    rounds = read_rounds(out)
    later = rounds[1:] or rounds
    return {"alma": summary["alma"], "global_acc": summary["global_acc"],
            "bytes_up": median([r["bytes_up_per_client"] for r in later]),
            "bytes_down": median([r["bytes_down_per_client"] for r in later]),
            "rejected": sum(summary["rejected_replies"].values())}  # reason -> count


def over_seeds(runs: list[dict]) -> dict:
    """Mean (and spread) over seeds; bytes do not depend on the seed, their median is kept."""
    alma = [r["alma"] for r in runs]
    up, down = median([r["bytes_up"] for r in runs]), median([r["bytes_down"] for r in runs])
    return {"alma": round(statistics.fmean(alma), 4),
            "alma_std": round(statistics.pstdev(alma), 4),
            "alma_per_seed": [round(a, 4) for a in alma],
            "global_acc": round(statistics.fmean(r["global_acc"] for r in runs), 4),
            "bytes_per_client_round": round(up + down), "bytes_up": round(up), "bytes_down": round(down),
            "rejected": sum(r["rejected"] for r in runs)}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--formats", default=DEFAULT_FORMATS, help="wire formats DTYPE[:TOPK], comma-separated")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds; ALMA is their mean")
    parser.add_argument("--algorithm", default="knfu", choices=("knfu", "fedmd", "dsfl"),
                        help="the distillation algorithm whose soft labels are measured")
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                        help="fedkd config overrides shared by every run (after the protocol defaults)")
    args = parser.parse_args(argv)

    from fedkd.config import make_config, parse_assignments
    from fedkd.data import build_federation
    from fedkd.models import build_model
    from fedkd.wire import WireFormat

    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    base = make_config(dict({"alpha": 0.1, "models": "cnn_small", "rounds": args.rounds, "save_models": False},
                            **PROTOCOL, **parse_assignments(args.sets)))
    fed = build_federation(base.federation)
    m, c = len(fed.transfer_x), fed.num_classes
    params = sum(t.numel() for t in build_model("cnn_small", fed.input_shape, c).state_dict().values())
    say(f"{base['num_clients']} clients, alpha {base['alpha']}, {args.rounds} rounds, seeds {seeds}; "
        f"M={m}, C={c}; cnn_small has {params} parameters ({4 * params} bytes)")

    variants = {"local": (base.replace(algorithm="local"), 0), "fedavg": (base.replace(algorithm="fedavg"), 2 * 4 * params)}
    for text in args.formats.split(","):
        dtype, k = parse_format(text)
        variants[text] = (base.replace(algorithm=args.algorithm, wire_dtype=dtype, wire_topk=k),
                          2 * WireFormat(dtype, k).payload_bytes(m, c))
    from server.simulate import one_ray_instance

    results = {}
    # one Ray instance and one set of client actors for every run, as `fedkd compare` (the numbers are those
    # of separate runs: tests/test_compare_reuse.py)
    with tempfile.TemporaryDirectory(prefix="bench-bytes-") as tmp, one_ray_instance():
        for i, (name, (cfg, payload)) in enumerate(variants.items()):
            runs = [run(cfg.replace(seed=seed), Path(tmp) / f"{i}-{seed}") for seed in seeds]
            results[name] = dict(over_seeds(runs), payload_bytes_per_client_round=payload)
            say(f"{name:10s} {results[name]}")

    local, fedavg = results.pop("local"), results.pop("fedavg")
    for r in results.values():
        r["fewer_bytes_than_fedavg"] = round(fedavg["bytes_per_client_round"] / r["bytes_per_client_round"], 2)
        r["payload_ratio"] = round(fedavg["payload_bytes_per_client_round"] / r["payload_bytes_per_client_round"], 2)
    # The goal needs both: >= 20x fewer bytes and ALMA at least FedAvg's. Report the smallest format whose
    # ALMA is at least FedAvg's, else the smallest one with its ALMA gap.
    eligible = [k for k, r in results.items() if r["alma"] >= fedavg["alma"] and r["rejected"] == 0]
    best_name = max(eligible or results, key=lambda k: results[k]["fewer_bytes_than_fedavg"])
    best = results[best_name]
    ratio = best["fewer_bytes_than_fedavg"]
    return finish("bytes", ratio, GOAL_RATIO, algorithm=args.algorithm,
                  met=ratio >= GOAL_RATIO and bool(eligible), best_format=best_name,
                  alma_at_least_fedavg=bool(eligible), alma_gap_to_fedavg=round(fedavg["alma"] - best["alma"], 4),
                  fedavg=fedavg, local_only=local, formats=results, alpha=base["alpha"],
                  clients=base["num_clients"], rounds=args.rounds, seeds=seeds, transfer_size=m, classes=c,
                  cnn_small_parameters=params, protocol=PROTOCOL, config_overrides=args.sets)


if __name__ == "__main__":
    main()
