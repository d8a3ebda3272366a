"""The server's soft-label inversion against a finished run, plain and with swing, for audit.json.

The run does not keep the uploads, so the audit recomputes them from each client's saved final
model with the run's release code (:meth:`RunArtifacts.upload`): the soft labels a client would
upload after the last round. The targets the server sends are the fusion of those uploads with
the last logged fusion weights (KnFu's neighbour graph), or the mean of the other clients'
uploads when the run logged none. Both variants are attacked on the same models: the uploads
as plain softmax(z / T), and swing-protected at the run's swing settings. The row matching
the run (swing on or off) is the headline number.
"""
from __future__ import annotations

import numpy as np

from fedkd.seeding import derive_seed

from .artifacts import RunArtifacts, finite_or_none
from .soft_label_inversion import soft_label_inversion
from .attacks import PrivacyAttack, register_attack

__all__ = ["audit_soft_label_inversion_of_run", "fuse_targets"]


def fuse_targets(uploads: dict[int, np.ndarray], weights: np.ndarray | None) -> dict[int, np.ndarray]:
    """What the server sends each client: its weighted fusion of the uploads it received.

    ``weights[n, m]`` = how much client n distils from client m; rows are renormalised over
    the clients present. Without weights (or with a zero row) the mean of the *other* clients.
    """
    ids = sorted(uploads)
    out = {}
    for n in ids:
        w = np.array([weights[n, m] if weights is not None and n < len(weights) and m < len(weights) else 0.0
                      for m in ids], np.float64)
        if not w.sum() > 0:
            w = np.array([0.0 if m == n else 1.0 for m in ids]) if len(ids) > 1 else np.ones(1)
        w = w / w.sum()
        out[n] = sum(wi * uploads[m] for wi, m in zip(w, ids))
    return out


def _summary(results: dict[str, dict], art: RunArtifacts) -> dict:
    """Means over targets, per class, held and never-held, with their spread over targets."""
    k = art.num_classes
    accs = [r["attack_acc_top1"] for r in results.values()]
    per_class = {str(c): float(np.mean([r["per_class_acc"][c] for r in results.values()])) for c in range(k)}
    held, never = [], []
    for cid, r in results.items():
        never_held = set(art.never_held_classes(int(cid)))
        held += [r["per_class_acc"][c] for c in range(k) if c not in never_held]
        never += [r["per_class_acc"][c] for c in never_held]
    n_rec = sum(int(np.prod(r["reconstructions"].shape[:2])) for r in results.values())
    return {
        "attack_acc_top1": float(np.mean(accs)),
        "attack_acc_top1_std": float(np.std(accs, ddof=1)) if len(accs) > 1 else None,
        "attack_acc_top1_max": float(np.max(accs)),
        "attack_acc_top5": float(np.mean([r["attack_acc_top5"] for r in results.values()])),
        "held_acc_top1": float(np.mean(held)) if held else None,
        "never_held_acc_top1": float(np.mean(never)) if never else None,
        "per_class": per_class,
        "knn_distance": finite_or_none(np.nanmean([r["knn_distance"] for r in results.values()])),
        "knn_distance_public": finite_or_none(np.mean([r["knn_distance_public"] for r in results.values()])),
        "n_reconstructions": n_rec,
        "per_client": {cid: {"attack_acc_top1": r["attack_acc_top1"], "attack_acc_top5": r["attack_acc_top5"],
                             "per_class_acc": {str(c): v for c, v in r["per_class_acc"].items()},
                             "never_held_classes": art.never_held_classes(int(cid)),
                             "knn_distance": finite_or_none(r["knn_distance"]),
                             "knn_distance_public": finite_or_none(r["knn_distance_public"])}
                       for cid, r in results.items()},
    }


def audit_soft_label_inversion_of_run(art: RunArtifacts, targets: list[int], judge, judge_info: dict,
                                      settings, log) -> tuple[dict, dict]:
    """Attack every target's uploads, plain and swing-protected; returns (JSON section, images)."""
    from fedkd.training import predict_logits

    fed = art.federation
    queries = art.transfer_inputs()
    m_public = len(fed.transfer_x)
    public_x = np.array(fed.transfer_x)
    rounds = int(art.cfg.run.rounds)
    logits = {cid: np.asarray(predict_logits(model, queries, device=settings.device), np.float64)
              for cid, (model, _) in art.models.items()}
    weights = art.last_fusion_weights()
    plain = {cid: art.upload(z, None, cid, rounds, swing=False) for cid, z in logits.items()}
    plain_targets = fuse_targets(plain, weights)
    px = np.concatenate([c.train_x for c in fed.clients])
    py = np.concatenate([c.train_y for c in fed.clients])
    variants, images = {}, {}
    for variant, swing in (("plain", False), ("swing", True)):
        uploads = plain if not swing else {
            cid: art.upload(z, plain_targets[cid], cid, rounds, swing=True) for cid, z in logits.items()}
        sent = fuse_targets(uploads, weights)
        results = {}
        for cid in targets:
            results[str(cid)] = soft_label_inversion(
                public_x, uploads[cid][:m_public], sent[cid][:m_public], judge, px, py,
                num_classes=art.num_classes, config=settings.sli,
                seed=derive_seed(settings.seed, "sli", cid), device=settings.device)
        variants[variant] = _summary(results, art)
        best = max(results, key=lambda c: results[c]["attack_acc_top1"])
        images[variant] = {"client": best, "reconstructions": results[best]["reconstructions"]}
        log(f"soft-label inversion ({variant} uploads): top-1 {variants[variant]['attack_acc_top1']:.3f} "
            f"over clients {targets} (chance {1 / art.num_classes:.2f})")
    as_run = "swing" if art.cfg.privacy.swing else "plain"
    head = variants[as_run]
    cfg_swing = art.release_config(True)
    section = {
        "attack_acc_top1": head["attack_acc_top1"],
        "attack_acc_top1_std": head["attack_acc_top1_std"],
        "attack_acc_top5": head["attack_acc_top5"],
        "per_class": head["per_class"],
        "chance": 1.0 / art.num_classes,
        "as_run": as_run,
        "targets": [int(t) for t in targets],
        "variants": variants,
        "swing_settings": {"noise_scale": cfg_swing["privacy.noise_scale"], "mechanism": cfg_swing["privacy.mechanism"],
                           "t_min": cfg_swing["privacy.t_min"], "t_max": cfg_swing["privacy.t_max"]},
        "uploads": "recomputed from each client's saved final model with the run's release code (last round)",
        "targets_sent": ("fusion of the uploads with the last logged fusion weights" if weights is not None
                         else "mean of the other clients' uploads"),
        "public_images": int(m_public),
        "judge": dict(judge_info),
        "config": {k: getattr(settings.sli, k) for k in settings.sli.__dataclass_fields__},
    }
    return section, images


def _soft_label_inversion_attack(ctx) -> dict | None:
    from .inversion_of_run import _all_private, _class_means, get_judge

    settings = ctx.settings
    targets = ctx.clients if settings.sli_clients is None else sorted(settings.sli_clients)
    if not targets:
        return None
    judge, judge_info = get_judge(ctx.art, settings, ctx.clock, ctx.log, ctx.cache)
    with ctx.clock.stage("soft-label inversion (server)"):
        result, images = audit_soft_label_inversion_of_run(ctx.art, targets, judge, judge_info, settings, ctx.log)
    ctx.images["soft_label_inversion"] = images
    ctx.images.setdefault("class_means", _class_means(*_all_private(ctx.art), ctx.art.num_classes))
    return result


register_attack(PrivacyAttack(
    "soft_label_inversion", "The server's soft-label inversion", _soft_label_inversion_attack,
    needs=("models", "rounds"), enabled=lambda s: s.sli_clients is None or len(s.sli_clients) > 0,
    description="What the server can reconstruct from the soft labels it received (after Takahashi et al., "
                "CVPR 2023)."))
