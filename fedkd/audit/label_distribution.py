"""The curious server's label-distribution inference from a client's uploads.

After Shi, Ouyang and Wang, "Unveiling Client Privacy Leakage from Public Dataset Usage in
Federated Distillation" (arXiv 2502.08001, 2025): a client's answers on the public set follow its
private label distribution, because a model trained on skewed data predicts its frequent classes
more often. The server, which receives those answers every round, estimates each client's class
histogram from them alone. Two estimators, both a plain function of one (M, C) upload:

- ``vote``: the share of public samples on which the upload's top class is c (add-half smoothing,
  so no class gets probability 0); it ignores the upload temperature.
- ``mean``: the mean of the uploaded probability rows (flattened by the upload temperature).

Both are reported; the headline (``kl``, ``tv``) is the stronger of the two on the audited clients.

How much the uploads leak is the attack's *advantage*: the no-upload guess's error minus the attack's,
per client, with a 95 % percentile bootstrap interval over the audited clients (``scipy.stats.bootstrap``).
An interval above 0 means the uploads tell the server more than it knew; one that contains 0 means the
attack is no better than the guess, at this many clients.

The error is measured against the client's true histogram as KL(true || estimate) (nats) and
total variation; the baseline is the best guess without the uploads, the population's class
proportions (all clients' data pooled: what an informed server expects of any client).
"""
from __future__ import annotations

import numpy as np

from .attacks import PrivacyAttack, register_attack

__all__ = ["ESTIMATORS", "advantage", "estimate_label_distribution", "kl_divergence", "total_variation",
           "label_distribution_inference", "audit_label_distribution_of_run"]

ESTIMATORS = ("vote", "mean")


def _as_distribution(counts, name: str) -> np.ndarray:
    p = np.asarray(counts, np.float64).ravel()
    if p.size < 2 or not np.all(np.isfinite(p)) or (p < 0).any() or p.sum() <= 0:
        raise ValueError(f"{name} must be >= 2 non-negative finite counts with a positive sum, got {p!r}")
    return p / p.sum()


def estimate_label_distribution(soft_labels, estimator: str = "vote") -> np.ndarray:
    """The server's estimate (C,) of a client's class proportions from its upload (M, C)."""
    soft = np.asarray(soft_labels, np.float64)
    if soft.ndim != 2 or soft.shape[0] < 1 or soft.shape[1] < 2 or not np.all(np.isfinite(soft)):
        raise ValueError(f"soft_labels must be a finite (M, C) array with M >= 1 and C >= 2, got {soft.shape}")
    if estimator == "vote":
        votes = np.bincount(soft.argmax(axis=1), minlength=soft.shape[1]).astype(np.float64)
        return _as_distribution(votes + 0.5, "votes")
    if estimator == "mean":
        return _as_distribution(np.clip(soft, 0, None).mean(axis=0), "mean upload")
    raise ValueError(f"estimator must be one of {ESTIMATORS}, got {estimator!r}")


def kl_divergence(p, q) -> float:
    """KL(p || q) in nats for distributions (or counts); 0 log 0 = 0; inf where q = 0 < p."""
    p, q = _as_distribution(p, "p"), _as_distribution(q, "q")
    if p.shape != q.shape:
        raise ValueError(f"p and q differ in length: {p.size} and {q.size}")
    mask = p > 0
    with np.errstate(divide="ignore"):
        return float(np.sum(p[mask] * (np.log(p[mask]) - np.log(q[mask]))))


def total_variation(p, q) -> float:
    p, q = _as_distribution(p, "p"), _as_distribution(q, "q")
    if p.shape != q.shape:
        raise ValueError(f"p and q differ in length: {p.size} and {q.size}")
    return float(0.5 * np.abs(p - q).sum())


def label_distribution_inference(uploads: dict[int, np.ndarray], histograms: dict[int, np.ndarray],
                                 prior=None, estimator: str = "best") -> dict:
    """Per client: the estimate from its upload, KL and TV to its true histogram, and the same for the
    no-upload guess ``prior`` (default: the pooled histograms of all clients given).

    estimator: one of :data:`ESTIMATORS`, or ``"best"``: the one with the lower mean TV over the clients
    (the stronger of the two fixed attacks, as the membership audit reports its strongest attack).
    Returns ``{client: {"kl", "tv", "baseline_kl", "baseline_tv", "estimate", "true",
    "<estimator>_kl", "<estimator>_tv" for both}}`` plus ``"mean"`` (over clients) and ``"settings"``.
    """
    if set(uploads) - set(histograms):
        raise ValueError(f"clients {sorted(set(uploads) - set(histograms))} have an upload but no histogram")
    if estimator not in (*ESTIMATORS, "best"):
        raise ValueError(f"estimator must be one of {ESTIMATORS} or 'best', got {estimator!r}")
    prior = _as_distribution(prior if prior is not None else np.sum([histograms[c] for c in histograms], axis=0),
                             "prior")
    ids = sorted(uploads)
    truth = {c: _as_distribution(histograms[c], f"histogram of client {c}") for c in ids}
    estimates = {name: {c: estimate_label_distribution(uploads[c], name) for c in ids} for name in ESTIMATORS}
    if estimator == "best":
        estimator = min(ESTIMATORS, key=lambda name: np.mean([total_variation(truth[c], estimates[name][c])
                                                                for c in ids]))
    out: dict = {}
    for c in ids:
        est = estimates[estimator][c]
        entry = {"kl": kl_divergence(truth[c], est), "tv": total_variation(truth[c], est),
                 "baseline_kl": kl_divergence(truth[c], prior), "baseline_tv": total_variation(truth[c], prior),
                 "estimate": est.round(4).tolist(), "true": truth[c].round(4).tolist()}
        for name in ESTIMATORS:
            entry[f"{name}_kl"] = kl_divergence(truth[c], estimates[name][c])
            entry[f"{name}_tv"] = total_variation(truth[c], estimates[name][c])
        out[str(c)] = entry
    keys = [k for k in next(iter(out.values()), {}) if k not in ("estimate", "true")]
    out["mean"] = {k: float(np.mean([out[str(c)][k] for c in ids])) for k in keys}
    out["advantage"] = {metric: advantage([out[str(c)][f"baseline_{metric}"] - out[str(c)][metric] for c in ids])
                        for metric in ("tv", "kl")}
    out["settings"] = {"estimator": estimator,
                       "baseline": "population class proportions (all clients' private data pooled)"}
    return out


BOOTSTRAP_RESAMPLES = 2000


def advantage(gaps: list[float], seed: int = 0) -> dict:
    """Mean of the per-client gaps (no-upload error - attack error) with a 95 % percentile bootstrap
    interval over clients; ``leaks`` when the whole interval is above 0. One client: no interval."""
    from scipy.stats import bootstrap

    values = np.asarray(gaps, np.float64)
    mean = float(values.mean())
    if values.size < 2 or not np.all(np.isfinite(values)):
        return {"mean": mean, "ci95": None, "leaks": None, "clients": int(values.size)}
    if np.ptp(values) == 0:  # every client the same: the bootstrap has nothing to resample
        low = high = mean
    else:
        ci = bootstrap((values,), np.mean, confidence_level=0.95, n_resamples=BOOTSTRAP_RESAMPLES,
                       method="percentile", rng=np.random.default_rng(seed)).confidence_interval
        low, high = float(ci.low), float(ci.high)
    return {"mean": mean, "ci95": [low, high], "leaks": bool(low > 0), "clients": int(values.size)}


def round_one_uploads(art, clients: list[int], device="cpu") -> dict[int, np.ndarray]:
    """What each client uploaded in round 1, recomputed exactly: round 1 has no targets, so it is the
    client's own local training from its seeded initial model (DP-SGD when the run had it, with the
    run-seeded noise of a simulation) and its release (plain or swing), through the run's own code."""
    from fedkd.node_inputs import simulated_inputs  # the node's inputs exactly as the simulation assembled them
    from fedkd.client_step import client_step, new_client_model
    from fedkd.training import resolve_device

    cfg, dev = art.cfg, resolve_device(device)
    out = {}
    for cid in clients:
        inputs, _ = simulated_inputs(cfg, cid)
        model, _ = new_client_model(cfg.training, cid, inputs.input_shape, inputs.num_classes,
                                    dp_sgd=cfg.privacy.dp_sgd)
        upload = client_step(cfg.training, cfg.privacy, inputs, model, round_num=1, targets=None, releases=0,
                             device=dev)
        out[cid] = upload.soft_labels
    return out


def audit_label_distribution_of_run(art, clients: list[int], settings=None) -> dict | None:
    """``audit.json["label_distribution_inference"]``: the server's estimate from each client's round-1
    upload (its local model alone: the attack's best round, recomputed exactly) and, under
    ``last_round``, from the last upload (recomputed from the saved final model), against each
    client's true histogram and the no-upload guess."""
    from fedkd.training import predict_logits

    if not clients:
        return None
    device = getattr(settings, "device", "cpu")
    histograms = {cid: np.bincount(art.private_data(cid)[1], minlength=art.num_classes) for cid in clients}
    prior = np.sum([np.bincount(art.private_data(c)[1], minlength=art.num_classes)
                    for c in range(len(art.federation.clients))], axis=0)
    result = label_distribution_inference(round_one_uploads(art, clients, device), histograms, prior)
    transfer_x, rounds = art.transfer_inputs(), int(art.cfg.run.rounds)
    last = {cid: art.upload(predict_logits(art.models[cid][0], transfer_x, device=device), None, cid, rounds)
            for cid in clients}
    last_result = label_distribution_inference(last, histograms, prior)
    result["last_round"] = {k: v for k, v in last_result.items() if k != "settings"}
    result["settings"].update(round=1, last_round=rounds, upload="swing" if art.cfg.privacy.swing else "plain",
                              dp_sgd=bool(art.cfg.privacy.dp_sgd))
    return result


def _label_distribution_attack(ctx) -> dict | None:
    with ctx.clock.stage("label-distribution inference (server)"):
        return audit_label_distribution_of_run(ctx.art, ctx.clients, ctx.settings)


def _interval(result: dict) -> str:
    adv = result.get("advantage", {}).get("tv") or {}
    if adv.get("ci95") is None:
        return f"{adv.get('mean', float('nan')):+.3f}"
    low, high = adv["ci95"]
    verdict = "the uploads leak" if adv["leaks"] else "no better than the guess"
    return f"{adv['mean']:+.3f}, 95 % CI [{low:+.3f}, {high:+.3f}]: {verdict}"


LABEL_DISTRIBUTION = register_attack(PrivacyAttack(
    "label_distribution_inference", "Label-distribution inference by the server", _label_distribution_attack,
    needs=("models",),
    summary=lambda r: (f"TV to the true histograms {r['mean']['tv']:.3f} from round-1 uploads "
                       f"(no-upload guess {r['mean']['baseline_tv']:.3f}; advantage {_interval(r)})"),
    description="The curious server estimates each client's class histogram from its soft labels on the public "
                "set (Shi, Ouyang and Wang, arXiv 2502.08001); KL and total variation to the true histogram, "
                "against the population's class proportions."))
