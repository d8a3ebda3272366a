"""Label-only model inversion (LOKT) against a run's saved client models: the ``inversion`` section.

On a few clients: top-1 access to the client's final model and the public transfer set; all classes
are inverted, and the classes the client never held are reported apart (the cross-client audit).
Baselines: the same attack, same seed and budget, on a model of the same architecture trained on the
same private data without federation; and the generator's random latents. An independent judge of
another architecture, trained on all clients' private data, scores every reconstruction.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable

import numpy as np

from fedkd.seeding import derive_seed

from .artifacts import RunArtifacts, finite_or_none
from .inversion import lokt_attack, train_evaluator
from .settings import AuditSettings
from .stages import Clock
from .attacks import PrivacyAttack, register_attack

# Reconstructions darker than this on average show nothing: the attack found no image of the class.
NEAR_BLANK_INTENSITY = 0.05

# Judges to choose from, in order of preference: the first one no audited client uses (then any
# other registered model).
_JUDGE_PREFERENCE = ("cnn_medium", "cnn_large", "cnn_small", "mlp")

def pick_lokt_targets(art: RunArtifacts, candidates: Iterable[int], count: int) -> list[int]:
    """``count`` candidates with the most never-held classes (ties: lower id first)."""
    ranked = sorted(candidates, key=lambda c: (-len(art.never_held_classes(c)), c))
    return sorted(ranked[:count])


def _judge_arch(archs: Iterable[str]) -> str:
    used = set(archs)
    from fedkd.models import model_names

    candidates = [a for a in _JUDGE_PREFERENCE if a in model_names()] + \
        [a for a in model_names() if a not in _JUDGE_PREFERENCE]
    return next((a for a in candidates if a not in used), candidates[0])


def _all_private(art: RunArtifacts) -> tuple[np.ndarray, np.ndarray]:
    fed = art.federation
    return (np.concatenate([c.train_x for c in fed.clients]),
            np.concatenate([c.train_y for c in fed.clients]))


def _class_means(x: np.ndarray, y: np.ndarray, num_classes: int) -> np.ndarray:
    """Mean private image of every class (zeros where a class has no sample), (K, C, H, W)."""
    out = np.zeros((num_classes, *x.shape[1:]), np.float32)
    for c in range(num_classes):
        if np.any(y == c):
            out[c] = x[y == c].mean(axis=0)
    return out


def _local_only_model(art: RunArtifacts, cid: int, arch: str, settings: AuditSettings):
    """The client's architecture trained on its private data alone, for as many epochs."""
    from fedkd.models import build_model
    from fedkd.training import evaluate_accuracy, train_supervised

    cfg = art.cfg
    x, y = art.private_data(cid)
    model = build_model(arch, art.federation.input_shape, art.num_classes,
                        seed=derive_seed(cfg.run.seed, "init", cid))
    train_supervised(model, x, y, epochs=max(1, art.local_training_epochs()), batch_size=cfg.training.batch_size,
                     lr=cfg.training.lr, seed=derive_seed(cfg.run.seed, "audit-local", cid), device=settings.device)
    client = art.federation.clients[cid]
    acc = evaluate_accuracy(model, client.test_x, client.test_y, device=settings.device)
    return model.eval(), float(acc)


def _summarise_attack(res: dict, held: list[int], never: list[int]) -> dict:
    """A JSON-ready LOKT result, with the held / never-held split of per-class accuracy."""
    def mean_over(per_class: dict, classes: list[int]):
        return float(np.mean([per_class[c] for c in classes])) if classes else None

    out = {k: v for k, v in res.items() if k not in ("reconstructions", "random_latent", "config")}
    out["per_class_acc"] = {str(c): v for c, v in res["per_class_acc"].items()}
    out["per_class_acc_top5"] = {str(c): v for c, v in res["per_class_acc_top5"].items()}
    out["knn_distance_per_class"] = {str(c): finite_or_none(v) for c, v in res["knn_distance_per_class"].items()}
    rec = res["reconstructions"]  # (K, n, C, H, W), K = all classes in order
    out["per_class_mean_intensity"] = {str(c): float(rec[i].mean()) for i, c in enumerate(res["classes"])}
    out["held_acc_top1"] = mean_over(res["per_class_acc"], held)
    out["cross_client_acc_top1"] = mean_over(res["per_class_acc"], never)
    out["cross_client_acc_top5"] = mean_over(res["per_class_acc_top5"], never)
    floor = res["random_latent"]
    out["random_latent"] = {
        "attack_acc_top1": floor["attack_acc_top1"], "attack_acc_top5": floor["attack_acc_top5"],
        "per_class_acc": {str(c): v for c, v in floor["per_class_acc"].items()},
        "cross_client_acc_top1": mean_over(floor["per_class_acc"], never),
        "knn_distance": floor.get("knn_distance"), "knn_distance_public": floor.get("knn_distance_public"),
    }
    return out


def get_judge(art: RunArtifacts, settings: AuditSettings, clock: Clock, log, cache: dict):
    """The independent judge (trained once per data and seed, shared by LOKT and the soft-label
    inversion) and what the report says about it."""
    from fedkd.training import evaluate_accuracy, predict_logits

    px, py = _all_private(art)
    judge_arch = _judge_arch(art.cfg.training.models)  # every architecture of the run, audited or not
    key = ("judge", art.federation.spec, judge_arch, settings.evaluator_epochs, settings.seed)
    with clock.stage("judge (evaluation classifier)"):
        if key not in cache:
            log(f"training the independent judge ({judge_arch}, {settings.evaluator_epochs} epochs, "
                f"{len(px)} private images)")
            judge = train_evaluator(px, py, num_classes=art.num_classes, arch=judge_arch,
                                    epochs=settings.evaluator_epochs, seed=derive_seed(settings.seed, "judge"),
                                    device=settings.device)
            judge_acc = evaluate_accuracy(judge, art.federation.global_test_x, art.federation.global_test_y,
                                          device=settings.device)
            # What the judge calls an all-black image: reconstructions that collapse to blank (a class
            # the target never learned) "hit" this class without showing anything.
            blank = np.zeros((1, *art.federation.input_shape), np.float32)
            blank_class = int(predict_logits(judge, blank, device=settings.device).argmax(axis=1)[0])
            log(f"judge accuracy on the global test set: {judge_acc:.3f}; it labels a blank image {blank_class}")
            cache[key] = (judge, {"architecture": judge_arch, "epochs": settings.evaluator_epochs,
                                  "global_test_acc": float(judge_acc), "blank_image_class": blank_class,
                                  "trained_on": "all clients' private training data"})
    return cache[key]


def audit_inversion_of_run(art: RunArtifacts, targets: list[int], settings: AuditSettings,
                           clock: Clock, log, cache: dict) -> tuple[dict, dict]:
    """LOKT against every target (and its local-only twin); returns (JSON section, images)."""

    px, py = _all_private(art)
    public_x = np.array(art.federation.transfer_x)  # a writable copy: torch warns on read-only arrays
    judge, judge_info = get_judge(art, settings, clock, log, cache)
    section_targets, images = {}, {"class_means": _class_means(px, py, art.num_classes), "targets": {}}
    attack_seed = derive_seed(settings.seed, "lokt")

    def attack(model, label):
        log(f"LOKT against {label}: about {settings.lokt.expected_queries(len(public_x), art.num_classes):,} "
            "label queries")
        return lokt_attack(model, public_x, None, judge, px, py, num_classes=art.num_classes,
                           config=settings.lokt, seed=attack_seed, device=settings.device,
                           progress=settings.progress)

    for cid in targets:
        model, arch = art.models[cid]
        never = art.never_held_classes(cid)
        held = [c for c in range(art.num_classes) if c not in never]
        with clock.stage(f"LOKT client {cid}"):
            fed_res = attack(model, f"client {cid} ({arch}, federated)")
        entry = {"architecture": arch, "held_classes": held, "never_held_classes": never,
                 "federated": _summarise_attack(fed_res, held, never),
                 **{f"federated_{k}": v for k, v in clock.stages[f"LOKT client {cid}"].items()}}
        images["targets"][str(cid)] = {"federated": fed_res["reconstructions"], "never_held": never}
        if settings.local_baseline:
            key = ("local-lokt", art.federation.spec, cid, arch, art.local_training_epochs(),
                   art.cfg.training.batch_size, art.cfg.training.lr, art.cfg.run.seed, settings.lokt,
                   art.cfg.canaries.enabled, settings.seed, settings.evaluator_epochs)
            with clock.stage(f"LOKT client {cid} local-only baseline"):
                if key not in cache:
                    local_model, local_acc = _local_only_model(art, cid, arch, settings)
                    cache[key] = (attack(local_model, f"client {cid} ({arch}, local only)"), local_acc)
                local_res, local_acc = cache[key]
            entry["local_only"] = {**_summarise_attack(local_res, held, never), "model_acc_local": local_acc}
            images["targets"][str(cid)]["local_only"] = local_res["reconstructions"]
        entry["near_blank_classes"] = {
            kind: [c for c in range(art.num_classes)
                   if entry[kind]["per_class_mean_intensity"][str(c)] < NEAR_BLANK_INTENSITY]
            for kind in ("federated", "local_only") if kind in entry}
        section_targets[str(cid)] = entry
        log(f"LOKT client {cid}: top-1 {fed_res['attack_acc_top1']:.3f} (all classes), never-held classes "
            f"{entry['federated']['cross_client_acc_top1']}, random-latent floor "
            f"{fed_res['random_latent']['attack_acc_top1']:.3f}")

    def mean_of(path: Callable[[dict], float | None]):
        values = [path(t) for t in section_targets.values()]
        values = [v for v in values if v is not None]
        return float(np.mean(values)) if values else None

    queries = settings.lokt.expected_queries(len(public_x), art.num_classes)
    section = {
        "targets": section_targets,
        "attack_acc_top1": mean_of(lambda t: t["federated"]["attack_acc_top1"]),
        "attack_acc_top5": mean_of(lambda t: t["federated"]["attack_acc_top5"]),
        "attack_acc_top1_max": max((t["federated"]["attack_acc_top1"] for t in section_targets.values()),
                                   default=None),
        "cross_client_attack_acc_top1": mean_of(lambda t: t["federated"]["cross_client_acc_top1"]),
        "cross_client_baselines": {
            "local_only": mean_of(lambda t: t.get("local_only", {}).get("cross_client_acc_top1")),
            "random_latent": mean_of(lambda t: t["federated"]["random_latent"]["cross_client_acc_top1"]),
        },
        "random_latent_acc_top1": mean_of(lambda t: t["federated"]["random_latent"]["attack_acc_top1"]),
        "local_only_acc_top1": mean_of(lambda t: t.get("local_only", {}).get("attack_acc_top1")),
        "chance": 1.0 / art.num_classes,
        "chance_top5": min(5, art.num_classes) / art.num_classes,
        "queries": queries,
        "queries_total": sum(t["federated"]["queries"] + t.get("local_only", {}).get("queries", 0)
                             for t in section_targets.values()),
        "public_images": int(len(public_x)),
        "judge": dict(judge_info),
        "config": dataclasses.asdict(settings.lokt),
    }
    return section, images


def _inversion_attack(ctx) -> dict | None:
    settings = ctx.settings
    if settings.lokt_clients is not None:
        targets = sorted(settings.lokt_clients)
    else:
        targets = pick_lokt_targets(ctx.art, ctx.clients, settings.lokt_targets)
    if not targets:
        return None
    result, images = audit_inversion_of_run(ctx.art, targets, settings, ctx.clock, ctx.log, ctx.cache)
    ctx.images.update(images)
    return result


register_attack(PrivacyAttack(
    "inversion", "Label-only model inversion (LOKT)", _inversion_attack, needs=("models",),
    enabled=lambda s: s.lokt_clients is not None or s.lokt_targets > 0,
    description="Reconstruct each class from top-1 answers of a client's final model (Nguyen et al., CVPR 2023)."))
