"""Membership inference against a run's saved client models: the ``membership`` section of audit.json.

Per client: members = the client's private training samples, non-members = its local test set
(held-out samples drawn with the client's own label proportions), balanced to equal size. The
reference attack's models train on *other clients'* private data, class-matched to the audited
client and of the same size, architecture and number of epochs: labelled data from the same source
that the client never used (the test split is avoided because the non-members come from it).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fedkd.seeding import derive_seed

from ._common import progress_bar
from .artifacts import RunArtifacts
from .membership import ATTACKS, audit_membership, reference_subsets, train_reference_models, worst_client
from .settings import AuditSettings
from .stages import Clock
from .attacks import PrivacyAttack, register_attack

def _metrics_for_json(metrics: dict) -> dict:
    """``attack_metrics`` output with the ROC as plain lists."""
    out = {k: v for k, v in metrics.items() if k not in ("roc", "roc_log")}
    fpr, tpr = metrics["roc"]
    out["roc_fpr"] = [float(v) for v in fpr]
    out["roc_tpr"] = [float(v) for v in tpr]
    if "roc_log" in metrics:
        fpr, tpr = metrics["roc_log"]
        out["roc_log_fpr"] = [float(v) for v in fpr]
        out["roc_log_tpr"] = [float(v) for v in tpr]
    return out


def strongest_attack(res: dict) -> dict:
    """The attack with the highest AUC on one client, with its AUC and TPRs at low FPR."""
    best = max(res, key=lambda name: res[name]["auc"])
    return {"attack": best, **{k: res[best][k] for k in ("auc", "tpr_at_0.1fpr", "tpr_at_1fpr")}}


def worst_clients(per_client: dict) -> dict:
    """Per attack, the client it does best on (``worst_client``), with that client's TPRs at low FPR."""
    worst = {attack: {**w, "client": str(w["client"])} for attack, w in worst_client(
        {cid: {a: {"auc": m["auc"]} for a, m in r.items()} for cid, r in per_client.items()}).items()}
    for attack, w in worst.items():
        m = per_client[w["client"]][attack]
        w["tpr_at_0.1fpr"], w["tpr_at_1fpr"] = m["tpr_at_0.1fpr"], m["tpr_at_1fpr"]
    return worst


def _reference_data(art: RunArtifacts, client_id: int, seed: int, *,
                    with_population: bool = False):
    """Other clients' private data, class-matched to ``client_id`` and twice its size.

    Each reference model trains on a random half (``train_reference_models``'s
    subsample), i.e. on as many samples as the client, with its class proportions where
    the other clients hold enough of a class. With ``with_population`` also returns RMIA's
    population: other clients' samples that no reference model trains on (at most 1,000),
    or, when the reference data used them all, the whole reference pool.
    """
    fed = art.federation
    others = [c for c in fed.clients if c.client_id != client_id]
    if not others:
        raise ValueError("the reference attack needs a second client's data; audit a run with "
                         "num_clients >= 2 or set reference_models=0")
    pool_x = np.concatenate([c.train_x for c in others])
    pool_y = np.concatenate([c.train_y for c in others])
    hist = np.asarray(fed.clients[client_id].label_histogram)
    rng = np.random.default_rng(derive_seed(seed, "reference-data", client_id))
    picked = []
    for cls in np.flatnonzero(hist):
        idx = np.flatnonzero(pool_y == cls)
        picked.append(rng.choice(idx, size=min(len(idx), 2 * int(hist[cls])), replace=False))
    idx = np.sort(np.concatenate(picked)) if picked else np.arange(0)
    if len(idx) < 2:
        raise ValueError(f"the other clients hold no samples of client {client_id}'s classes; "
                         "set reference_models=0")
    if not with_population:
        return np.array(pool_x[idx]), np.array(pool_y[idx])
    rest = np.setdiff1d(np.arange(len(pool_y)), idx)
    if len(rest) < 50:
        rest = idx
    if len(rest) > 1000:
        rest = np.sort(rng.choice(rest, size=1000, replace=False))
    return np.array(pool_x[idx]), np.array(pool_y[idx]), np.array(pool_x[rest]), np.array(pool_y[rest])


def _reference_epochs(art: RunArtifacts, settings: AuditSettings) -> int:
    epochs = settings.reference_epochs or max(1, art.local_training_epochs())
    if settings.reference_epochs_cap is not None:
        epochs = min(epochs, settings.reference_epochs_cap)
    return epochs


@dataclass
class ClientReferences:
    """A client's reference models and what they were trained on: the reference data (``x``, ``y``),
    each model's IN mask over it (its training subset), and RMIA's population (never trained on)."""

    models: list
    x: np.ndarray
    y: np.ndarray
    masks: list[np.ndarray]
    population: tuple[np.ndarray, np.ndarray]
    cache_key: tuple


def client_references(art: RunArtifacts, cid: int, arch: str, epochs: int, settings: AuditSettings,
                      cache: dict) -> ClientReferences:
    """The reference models of client ``cid`` (``settings.reference_models`` >= 1), trained once per cache:
    other clients' class-matched data, the client's architecture, batch size, learning rate and ``epochs``."""
    cfg = art.cfg
    key = ("refs", art.federation.spec, cid, arch, epochs, settings.reference_models,
           cfg.training.batch_size, cfg.training.lr, settings.seed)
    rx, ry, zx, zy = _reference_data(art, cid, settings.seed, with_population=True)
    ref_seed = derive_seed(settings.seed, "reference", cid)
    if key not in cache:
        cache[key] = train_reference_models(
            rx, ry, num_classes=art.num_classes, n_models=settings.reference_models, arch=arch,
            subsample=0.5, epochs=epochs, batch_size=cfg.training.batch_size, lr=cfg.training.lr,
            seed=ref_seed, device=settings.device)
    masks = []
    for subset in reference_subsets(len(rx), settings.reference_models, 0.5, ref_seed):
        mask = np.zeros(len(rx), bool)
        mask[subset] = True
        masks.append(mask)
    return ClientReferences(cache[key], rx, ry, masks, (zx, zy), key)


def audit_membership_of_run(art: RunArtifacts, clients: list[int], settings: AuditSettings,
                            clock: Clock, log, cache: dict) -> dict:
    """Membership attacks on every audited client; the ``membership`` section of audit.json."""
    epochs = _reference_epochs(art, settings)
    per_client, strongest, sizes, rmia_a = {}, {}, {}, {}
    for cid in progress_bar(clients, enabled=settings.progress, desc="membership (clients)"):
        model, arch = art.models[cid]
        client = art.federation.clients[cid]
        with clock.stage(f"membership client {cid}"):
            refs, population, a = None, None, None
            if settings.reference_models:
                ref = client_references(art, cid, arch, epochs, settings, cache)
                refs = ref.models
                if settings.rmia:
                    from .rmia import choose_offline_a

                    population = ref.population
                    zx, zy = population
                    a_key = ("rmia-a",) + ref.cache_key
                    if a_key not in cache:
                        cache[a_key] = choose_offline_a(refs, ref.x, ref.y, ref.masks, zx, zy, device=settings.device)
                    rmia_a[str(cid)] = {**cache[a_key], "population": int(len(zy))}
                    a = cache[a_key]["a"]
            res = audit_membership(
                model, np.array(client.train_x), client.train_y, np.array(client.test_x), client.test_y,
                reference_models=refs, device=settings.device, seed=derive_seed(settings.seed, "mia", cid),
                n_augment=max(1, settings.label_only_augment), population=population, rmia_a=a,
                n_boot=settings.bootstrap,
            )
        per_client[str(cid)] = {name: _metrics_for_json(m) for name, m in res.items()}
        strongest[str(cid)] = strongest_attack(res)
        best = strongest[str(cid)]["attack"]
        sizes[str(cid)] = {"architecture": arch, "n_members": res[best]["n_members"],
                           "n_nonmembers": res[best]["n_nonmembers"]}
        log(f"membership client {cid} ({arch}): " + ", ".join(
            f"{name} AUC {m['auc']:.3f}" for name, m in res.items()))
    worst = worst_clients(per_client)
    return {
        "attacks": [a for a in ATTACKS if any(a in r for r in per_client.values())],
        "per_client": per_client,
        "strongest_attack": strongest,
        "worst_client": worst,
        "clients": sizes,
        "members": "the client's private training samples (canaries excluded)",
        "nonmembers": "the client's local test set (held out, drawn with its own label proportions)",
        "reference_data": ("other clients' private training data, class-matched to the audited client, "
                           "each reference model on as many samples as the client"
                           if settings.reference_models else "none (reference attack skipped)"),
        "reference_models": settings.reference_models,
        "reference_epochs": epochs if settings.reference_models else 0,
        "rmia": {"offline_a": rmia_a, "gamma": 1.0,
                 "population": "other clients' private samples that no reference model trained on",
                 "a_chosen_on": "the reference models (each in turn as target), never the audited model"}
        if rmia_a else None,
        "bootstrap": settings.bootstrap,
    }


def _membership_attack(ctx) -> dict:
    return audit_membership_of_run(ctx.art, ctx.clients, ctx.settings, ctx.clock, ctx.log, ctx.cache)


def _membership_line(result: dict) -> str:
    worst = result.get("worst_client") or {}
    parts = [f"{attack} AUC {w['auc']:.3f} (client {w['client']})" for attack, w in worst.items()
             if w.get("auc") is not None]
    return "worst client per attack: " + ", ".join(parts) if parts else "no attack ran"


register_attack(PrivacyAttack(
    "membership", "Membership inference", _membership_attack, needs=("models",), summary=_membership_line,
    description="Was a sample in the client's private training data? Loss, confidence, reference (LiRA), RMIA "
                "and label-only attacks on each client's final model."))
