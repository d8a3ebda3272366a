"""The curious server's membership inference from a client's uploads (distillation-based LiRA).

After Shi, Ouyang and Wang, "Unveiling Client Privacy Leakage from Public Dataset Usage in Federated
Distillation" (arXiv 2502.08001, 2025). The server never sees a client's model, only its soft labels on
the public transfer set. It can still attack membership: it distils a **surrogate** of the client's model
from those (transfer image, soft label) pairs, and runs the membership attacks against the surrogate. For
the reference attacks (LiRA-offline, RMIA) its reference models go through the same pipeline: each
reference model answers on the transfer set as a client would (the same release code), and the server
distils a reference surrogate from that answer. Target and references are then compared on an equal
footing: all of them are what distillation from an upload makes of a model.

Per audited client:

1. The upload of the last round, recomputed from the saved final model with the run's own release
   (plain softmax at the run's temperature, or swing with the run's noise; a DP-SGD client's final
   model is already the DP-trained one): ``RunArtifacts.upload``, as the label-distribution attack's
   ``last_round``.
2. A surrogate of the client's architecture (the attacker's favourable assumption: a real server may
   not know it), distilled with :func:`fedkd.training.distill` at the run's temperature, batch size and
   learning rate, for as many epochs as the reference models train (``reference_epochs``, else
   rounds x ``revisit_epochs``, capped by ``reference_epochs_cap``).
3. The client's reference models (shared with the ``membership`` attack through the audit's cache), each
   one's upload (same release, same client id and round: with swing this reuses the client's noise
   draw, a favourable assumption for the attacker, who in a real deployment would draw its own), and a
   reference surrogate distilled from each. Their IN/OUT masks over the reference data are the
   reference models' training subsets, exactly as for the membership attack; RMIA's ``a`` is chosen on
   the reference surrogates.
4. :func:`fedkd.audit.membership.audit_membership` with the surrogate as the target: members = the
   client's private training samples, non-members = its local test set, balanced with the membership
   attack's seed (so both attacks score the same samples).

How faithful the surrogate is, is reported beside the numbers: its top-1 agreement with the client's
model on the client's local test set (the non-members' pool), and both models' accuracy there.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from fedkd.seeding import derive_seed

from ._common import as_device, progress_bar
from .attacks import PrivacyAttack, register_attack
from .membership import ATTACKS, audit_membership
from .membership_of_run import (_metrics_for_json, _reference_epochs, client_references, strongest_attack,
                                worst_clients)

__all__ = ["distil_surrogate", "top1_agreement", "upload_membership_attack", "audit_upload_membership_of_run",
           "upload_of"]


def upload_of(art, model: torch.nn.Module, transfer_x: np.ndarray, client_id: int, device="cpu") -> np.ndarray:
    """What ``model`` would upload as client ``client_id`` in the run's last round (the run's release)."""
    from fedkd.training import predict_logits

    logits = predict_logits(model, transfer_x, device=as_device(device))
    return art.upload(logits, None, client_id, int(art.cfg.run.rounds))


def distil_surrogate(upload, transfer_x, *, arch: str, num_classes: int, temperature: float, epochs: int,
                     batch_size: int, lr: float, seed: int, device="cpu") -> torch.nn.Module:
    """A fresh ``arch`` model (seeded) distilled from (transfer_x, upload) at ``temperature``; in eval mode."""
    from fedkd.models import build_model
    from fedkd.training import distill

    x = np.asarray(transfer_x, np.float32)
    model = build_model(arch, tuple(x.shape[1:]), num_classes, seed=seed)
    distill(model, x, np.asarray(upload, np.float32), temperature=temperature, epochs=epochs,
            batch_size=batch_size, lr=lr, seed=seed, device=as_device(device))
    return model.eval()


def top1_agreement(a: torch.nn.Module, b: torch.nn.Module, x, device="cpu") -> float:
    """Share of ``x`` on which the two models predict the same class."""
    from fedkd.training import predict_logits

    dev = as_device(device)
    return float(np.mean(predict_logits(a, x, device=dev).argmax(1) == predict_logits(b, x, device=dev).argmax(1)))


def upload_membership_attack(upload, transfer_x, members, nonmembers, *, arch: str, num_classes: int,
                             temperature: float, epochs: int, batch_size: int, lr: float, seed: int,
                             device="cpu", reference_uploads: Sequence[np.ndarray] = (),
                             reference_data=None, reference_masks: Sequence[np.ndarray] | None = None,
                             population=None, rmia: bool = True, mia_seed: int = 0, n_augment: int = 16,
                             n_boot: int = 0) -> dict:
    """Distil a surrogate from one upload and attack its membership: the server's attack, without a run.

    Parameters
    ----------
    upload : (M, C) soft labels the server received on ``transfer_x`` (M, C_in, H, W).
    members, nonmembers : (x, y) pairs: the client's training samples and held-out samples.
    arch, num_classes : the surrogate's architecture (``fedkd.models.build_model``) and label space.
    temperature, epochs, batch_size, lr, seed, device : the distillation (``fedkd.training.distill``).
    reference_uploads : uploads of reference models on ``transfer_x`` (models that never saw the
        candidates); one reference surrogate is distilled from each (seeds derived from ``seed``).
    reference_data, reference_masks, population : for RMIA: the reference models' training pool (x, y),
        each one's IN mask over it, and population samples (x, y) none of them trained on; ``a`` is then
        chosen on the reference surrogates (:func:`fedkd.audit.rmia.choose_offline_a`).
    rmia : run RMIA when the references and a population allow it.
    mia_seed, n_augment, n_boot : as ``seed``, ``n_augment``, ``n_boot`` of
        :func:`fedkd.audit.membership.audit_membership`.

    Returns
    -------
    dict with ``metrics`` (``audit_membership``'s result against the surrogate), ``surrogate``,
    ``reference_surrogates`` and ``rmia_a`` (the choice of ``a``, or None).
    """
    distil = dict(arch=arch, num_classes=num_classes, temperature=temperature, epochs=epochs,
                  batch_size=batch_size, lr=lr, device=device)
    surrogate = distil_surrogate(upload, transfer_x, seed=seed, **distil)
    refs = [distil_surrogate(u, transfer_x, seed=derive_seed(seed, "reference", k), **distil)
            for k, u in enumerate(reference_uploads)]
    choice, a, pop = None, None, None
    if rmia and refs and population is not None:
        from .rmia import choose_offline_a

        pop = population
        if reference_data is not None and reference_masks is not None:
            choice = choose_offline_a(refs, reference_data[0], reference_data[1], reference_masks,
                                      population[0], population[1], device=device)
            a = choice["a"]
    metrics = audit_membership(surrogate, np.asarray(members[0]), members[1], np.asarray(nonmembers[0]),
                               nonmembers[1], reference_models=refs or None, device=device, seed=mia_seed,
                               n_augment=n_augment, population=pop, rmia_a=a, n_boot=n_boot)
    return {"metrics": metrics, "surrogate": surrogate, "reference_surrogates": refs, "rmia_a": choice}


def _model_membership_headline(membership: dict | None) -> dict | None:
    """The membership attack's worst client on the models themselves (for comparison), or None."""
    strongest = (membership or {}).get("strongest_attack") or {}
    if not strongest:
        return None
    cid = max(strongest, key=lambda c: strongest[c]["auc"])
    return {"client": cid, **strongest[cid]}


def audit_upload_membership_of_run(art, clients: list[int], settings, clock, log, cache: dict,
                                   membership: dict | None = None) -> dict | None:
    """``audit.json["upload_membership"]``: the server's distillation-based membership attack per client."""
    from fedkd.training import evaluate_accuracy

    if not clients:
        return None
    if art.cfg.run.exchanges_weights:
        log(f"upload membership: {art.cfg.run.algorithm} exchanges weights, not soft labels: nothing to attack")
        return None
    cfg, device = art.cfg, settings.device
    epochs = _reference_epochs(art, settings)
    transfer_x = art.transfer_inputs()
    distil = dict(temperature=float(cfg.training.temperature), epochs=epochs, batch_size=int(cfg.training.batch_size),
                  lr=float(cfg.training.lr), num_classes=art.num_classes, device=device)
    per_client, strongest, surrogates, rmia_a = {}, {}, {}, {}
    for cid in progress_bar(clients, enabled=settings.progress, desc="upload membership (clients)"):
        model, arch = art.models[cid]
        client = art.federation.clients[cid]
        with clock.stage(f"upload membership client {cid}"):
            upload = upload_of(art, model, transfer_x, cid, device)
            ref_uploads, ref_data, masks, population = (), None, None, None
            if settings.reference_models:
                ref = client_references(art, cid, arch, epochs, settings, cache)
                ref_uploads = [upload_of(art, m, transfer_x, cid, device) for m in ref.models]
                ref_data, masks, population = (ref.x, ref.y), ref.masks, ref.population
            out = upload_membership_attack(
                upload, transfer_x, (np.array(client.train_x), client.train_y),
                (np.array(client.test_x), client.test_y), arch=arch,
                seed=derive_seed(settings.seed, "upload-mia", cid), reference_uploads=ref_uploads,
                reference_data=ref_data, reference_masks=masks, population=population, rmia=settings.rmia,
                mia_seed=derive_seed(settings.seed, "mia", cid), n_augment=max(1, settings.label_only_augment),
                n_boot=settings.bootstrap, **distil)
            res, surrogate = out["metrics"], out["surrogate"]
            test_x = np.array(client.test_x)
            agree = top1_agreement(surrogate, model, test_x, device)
            surrogates[str(cid)] = {
                "agreement_test": agree,
                "surrogate_test_acc": evaluate_accuracy(surrogate, test_x, client.test_y, device=as_device(device)),
                "model_test_acc": evaluate_accuracy(model, test_x, client.test_y, device=as_device(device)),
                "reference_surrogates": len(out["reference_surrogates"]),
            }
            if out["rmia_a"] is not None:
                rmia_a[str(cid)] = {**out["rmia_a"], "population": int(len(population[1]))}
        per_client[str(cid)] = {name: _metrics_for_json(m) for name, m in res.items()}
        strongest[str(cid)] = strongest_attack(res)
        log(f"upload membership client {cid} ({arch}, surrogate agreement {agree:.3f}): " + ", ".join(
            f"{name} AUC {m['auc']:.3f}" for name, m in res.items()))
    worst = worst_clients(per_client)
    head_cid = max(strongest, key=lambda c: strongest[c]["auc"])
    agreements = [s["agreement_test"] for s in surrogates.values()]
    return {
        # The headline first: the report's generic section shows the first rows of this dict.
        "headline": {"client": head_cid, **strongest[head_cid]},
        "surrogate_agreement": {"mean": float(np.mean(agreements)), "min": float(np.min(agreements))},
        "model_membership": _model_membership_headline(membership),
        "strongest_attack": strongest,
        "worst_client": worst,
        "surrogates": surrogates,
        "attacks": [a for a in ATTACKS if any(a in r for r in per_client.values())],
        "upload": {"round": int(cfg.run.rounds), "kind": "swing" if cfg.privacy.swing else "plain",
                   "dp_sgd": bool(cfg.privacy.dp_sgd), "transfer_samples": int(len(transfer_x))},
        "distillation": {"architecture": "the client's own", "temperature": distil["temperature"],
                         "epochs": epochs, "batch_size": distil["batch_size"], "lr": distil["lr"]},
        "members": "the client's private training samples (canaries excluded)",
        "nonmembers": "the client's local test set (held out, drawn with its own label proportions)",
        "reference_models": settings.reference_models,
        "reference_surrogates": ("one per reference model of the membership attack, distilled from its upload "
                                 "(same release, same client id and round)" if settings.reference_models
                                 else "none (reference attacks skipped)"),
        "rmia": {"offline_a": rmia_a, "a_chosen_on": "the reference surrogates"} if rmia_a else None,
        "bootstrap": settings.bootstrap,
        "per_client": per_client,
    }


def _upload_membership_attack(ctx) -> dict | None:
    return audit_upload_membership_of_run(ctx.art, ctx.clients, ctx.settings, ctx.clock, ctx.log, ctx.cache,
                                          membership=ctx.results.get("membership"))


def _summary(result: dict) -> str:
    h = result["headline"]
    line = (f"worst client {h['client']}: AUC {h['auc']:.3f}, TPR at 1 % FPR {h['tpr_at_1fpr']:.3f} "
            f"({h['attack']} on a surrogate distilled from its uploads; surrogate agrees with the client's model "
            f"on {result['surrogate_agreement']['mean']:.0%} of its test set)")
    model = result.get("model_membership")
    if model:
        line += f"; on the model itself: AUC {model['auc']:.3f} ({model['attack']}, client {model['client']})"
    return line


UPLOAD_MEMBERSHIP = register_attack(PrivacyAttack(
    "upload_membership", "Membership inference by the server from the uploads", _upload_membership_attack,
    needs=("models",), summary=_summary,
    description="The curious server distils a surrogate of each client's model from its last-round soft labels "
                "on the public set, and reference surrogates from its reference models' answers, then runs the "
                "membership attacks (LiRA-offline, RMIA and the simpler ones) on the surrogate (distillation-based "
                "LiRA, Shi, Ouyang and Wang, arXiv 2502.08001). Members: the client's private training samples; "
                "non-members: its local test set. The surrogate has the client's architecture (favourable to the "
                "attacker); its top-1 agreement with the client's model on the test set says how faithful it is."))
