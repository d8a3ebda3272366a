"""Communication: bytes per client-round of soft labels (float32, float16, uint8, top-k) vs FedAvg weights.

Every variant runs through Flower's simulation on the same data (digits, Dirichlet alpha = 0.1, the
same seed and clients) with the default CNN on every client (``models=cnn_small``; FedAvg needs one
architecture). KnFu runs once per wire format (``wire_dtype``, ``wire_topk``); FedAvg exchanges the
CNN's weights both ways. Bytes are whole serialised messages as the server counts them
(``bytes_up_per_client`` + ``bytes_down_per_client`` in metrics.jsonl: payload, metrics and the run
config), averaged over rounds 2..R (round 1 of distillation sends no targets); the bare payload
(arrays only) is reported beside them.

    .venv/bin/python experiments/bench/bytes.py                     # 10 clients, 5 rounds, 5 runs (~6 min)
    .venv/bin/python experiments/bench/bytes.py --rounds 10 --formats float32,uint8:2

ratio = FedAvg bytes / bytes of the smallest format whose ALMA is at least FedAvg's; goal >= 20.
"""
from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import _common  # noqa: F401  (sys.path and environment)
from _common import finish, median, say

GOAL_RATIO = 20.0
DEFAULT_FORMATS = "float32,float16,uint8,uint8:3,uint8:2"


def parse_format(text: str) -> tuple[str, int]:
    """``"uint8:2"`` -> ("uint8", 2); ``"float16"`` -> ("float16", 0)."""
    dtype, _, k = text.partition(":")
    return dtype.strip(), int(k or 0)


def run(cfg, out: Path) -> dict:
    from server.simulate import simulate

    summary = simulate(cfg, str(out), progress=False)
    rounds = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    per_round = [r["bytes_up_per_client"] + r["bytes_down_per_client"] for r in rounds]
    return {"alma": round(summary["alma"], 4), "global_acc": round(summary["global_acc"], 4),
            "bytes_per_client_round": round(median(per_round[1:]) if len(per_round) > 1 else per_round[0]),
            "bytes_up": round(median([r["bytes_up_per_client"] for r in rounds[1:]] or [rounds[0]["bytes_up_per_client"]])),
            "bytes_down": round(median([r["bytes_down_per_client"] for r in rounds[1:]] or [0])),
            "bytes_all_rounds_mean": round(sum(per_round) / len(per_round)),
            "rejected": summary["rejected_replies"]}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--formats", default=DEFAULT_FORMATS, help="wire formats DTYPE[:TOPK], comma-separated")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                        help="fedkd config overrides shared by every run")
    args = parser.parse_args(argv)

    from fedkd.config import make_config, parse_assignments
    from fedkd.models import build_model
    from fedkd.wire import WireFormat

    base = make_config(dict({"alpha": 0.1, "models": "cnn_small", "rounds": args.rounds, "save_models": False},
                            **parse_assignments(args.sets)))
    from fedkd.config import federation_spec
    from fedkd.data import build_federation

    fed = build_federation(federation_spec(base))
    m, c = len(fed.transfer_x), fed.num_classes
    params = sum(t.numel() for t in build_model("cnn_small", fed.input_shape, c).state_dict().values())
    say(f"{base['num_clients']} clients, alpha {base['alpha']}, {args.rounds} rounds; M={m}, C={c}; "
        f"cnn_small has {params} parameters ({4 * params} bytes)")

    results = {}
    with tempfile.TemporaryDirectory(prefix="bench-bytes-") as tmp:
        for i, text in enumerate(["fedavg", *args.formats.split(",")]):
            out = Path(tmp) / f"run{i:02d}"  # equal-length paths: the path travels in the run config
            if text == "fedavg":
                cfg, payload = base.replace(algorithm="fedavg"), 2 * 4 * params
            else:
                dtype, k = parse_format(text)
                cfg = base.replace(algorithm="knfu", wire_dtype=dtype, wire_topk=k)
                payload = 2 * WireFormat(dtype, k).payload_bytes(m, c)
            results[text] = dict(run(cfg, out), payload_bytes_per_client_round=payload)
            say(f"{text:10s} {results[text]}")

    fedavg = results.pop("fedavg")
    for r in results.values():
        r["fewer_bytes_than_fedavg"] = round(fedavg["bytes_per_client_round"] / r["bytes_per_client_round"], 2)
        r["payload_ratio"] = round(fedavg["payload_bytes_per_client_round"] / r["payload_bytes_per_client_round"], 2)
    # The goal needs both: >= 20x fewer bytes and ALMA at least FedAvg's. Report the smallest format whose
    # ALMA is at least FedAvg's, else the smallest one with its ALMA gap.
    eligible = [k for k, r in results.items() if r["alma"] >= fedavg["alma"] and r["rejected"] == 0]
    best_name = max(eligible or results, key=lambda k: results[k]["fewer_bytes_than_fedavg"])
    best = results[best_name]
    ratio = best["fewer_bytes_than_fedavg"]
    return finish("bytes", ratio, GOAL_RATIO, met=ratio >= GOAL_RATIO and bool(eligible), best_format=best_name,
                  alma_at_least_fedavg=bool(eligible), alma_gap_to_fedavg=round(fedavg["alma"] - best["alma"], 4),
                  fedavg=fedavg, formats=results, alpha=base["alpha"], clients=base["num_clients"],
                  rounds=args.rounds, transfer_size=m, classes=c, cnn_small_parameters=params,
                  config_overrides=args.sets)


if __name__ == "__main__":
    main()
