"""Audit a finished run: membership inference and LOKT on its saved client models.

``audit_run(run_dir)`` rebuilds the run's data from its config, loads every saved client
model, runs the attacks of :mod:`fedkd.audit` against them and writes
``<run_dir>/audit/audit.json`` (every number) and ``report.html`` (the same, readable).

What is attacked, and with what (docs/audit.md has the threat models):

- **membership**, per client: members = the client's private training samples,
  non-members = its local test set (held-out samples drawn with the client's own label
  proportions), balanced to equal size. The reference attack's models train on *other
  clients'* private data, class-matched to the audited client and of the same size,
  architecture and number of epochs: labelled data from the same source that the client
  never used (the test split is avoided because the non-members come from it).
- **inversion** (LOKT), on a few clients: top-1 access to the client's final model and the
  public transfer set; all classes are inverted, and the classes the client never held
  are reported apart (the cross-client audit). Baselines: the same attack, same seed and
  budget, on a model of the same architecture trained on the same private data without
  federation; and the generator's random latents. An independent judge of another
  architecture, trained on all clients' private data, scores every reconstruction.
"""
from __future__ import annotations

import contextlib
import dataclasses
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from fedkd.seeding import derive_seed

from .artifacts import RunArtifacts, finite_or_none, load_run
from .inversion import LoktConfig, lokt_attack, train_evaluator
from .membership import ATTACKS, audit_membership, reference_subsets, train_reference_models, worst_client
from .soft_label_inversion import QUICK_SLI, SliConfig

__all__ = ["AuditSettings", "QUICK_LOKT", "audit_run", "audit_loaded_run", "pick_lokt_targets"]

# Small LOKT budget (the unit tests' setting): about 5 s of CPU per attack on digits.
QUICK_LOKT = LoktConfig(
    gan_steps=400, gan_warmup=80, surrogate_archs=("mlp",), surrogate_per_class=30,
    surrogate_epochs=10, n_per_class=8, invert_steps=60,
)

# Reconstructions darker than this on average show nothing: the attack found no image of the class.
NEAR_BLANK_INTENSITY = 0.05

# Judges to choose from, in order of preference: the first one no audited client uses.
_JUDGE_ARCHS = ("cnn_medium", "cnn_large", "cnn_small", "mlp")


@dataclasses.dataclass(frozen=True)
class AuditSettings:
    """What to attack and with which budgets.

    Attributes
    ----------
    clients : tuple of int or None
        Clients whose membership leakage is measured (None = all).
    lokt_clients : tuple of int or None
        LOKT targets; None picks ``lokt_targets`` of the audited clients, those with the
        most never-held classes first (they make the cross-client audit informative).
    lokt_targets : int
        How many targets to pick when ``lokt_clients`` is None (0 = no inversion).
    lokt : LoktConfig
        The attack's budgets (``LoktConfig.expected_queries`` gives its queries).
    local_baseline : bool
        Also attack a model trained without federation (same data, architecture,
        epochs and attack seed): what the attack gets from the client's own data alone.
    reference_models : int
        Reference models per client for the reference attack (0 = skip that attack).
    reference_epochs : int or None
        Their training epochs (None = what the client ran: rounds x revisit_epochs).
    reference_epochs_cap : int or None
        Upper bound on those epochs (for quick audits of long runs).
    evaluator_epochs : int
        Training epochs of the independent judge.
    label_only_augment : int
        Perturbed copies per sample in the label-only attack.
    rmia : bool
        Run RMIA (offline) with the reference models.
    bootstrap : int
        Bootstrap resamples behind the intervals of every membership number (0 = none).
    sli : SliConfig
        Budgets of the server's soft-label inversion.
    sli_clients : tuple of int or None
        Its targets (None = every audited client; () = skip it).
    one_run_canaries : int
        Candidates of the one-run ε audit, each included with probability 1/2 (0 = skip).
    seed : int
    device : str
    progress : bool
        Progress bars and stage lines on stderr.
    """

    clients: tuple[int, ...] | None = None
    lokt_clients: tuple[int, ...] | None = None
    lokt_targets: int = 2
    lokt: LoktConfig = LoktConfig()
    local_baseline: bool = True
    reference_models: int = 4
    reference_epochs: int | None = None
    reference_epochs_cap: int | None = None
    evaluator_epochs: int = 30
    label_only_augment: int = 16
    rmia: bool = True
    bootstrap: int = 200
    sli: SliConfig = SliConfig()
    sli_clients: tuple[int, ...] | None = None
    one_run_canaries: int = 200
    seed: int = 0
    device: str = "cpu"
    progress: bool = True

    @classmethod
    def quick(cls, **changes) -> "AuditSettings":
        """Small budgets for a first look or a test: one LOKT target, the small LOKT
        setting, two reference models of at most 20 epochs, a 10-epoch judge."""
        base = dict(lokt_targets=1, lokt=QUICK_LOKT, reference_models=2, reference_epochs_cap=20,
                    evaluator_epochs=10, label_only_augment=8, bootstrap=100, sli=QUICK_SLI,
                    one_run_canaries=100)
        base.update(changes)
        return cls(**base)

    def __post_init__(self):
        for name in ("lokt_targets", "reference_models", "label_only_augment", "bootstrap", "one_run_canaries"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
        if self.evaluator_epochs < 1:
            raise ValueError(f"evaluator_epochs must be >= 1, got {self.evaluator_epochs!r}")
        for name in ("reference_epochs", "reference_epochs_cap"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"{name} must be None or an integer >= 1, got {value!r}")
        if not isinstance(self.lokt, LoktConfig):
            raise ValueError(f"lokt must be a LoktConfig, got {type(self.lokt).__name__}")
        if not isinstance(self.sli, SliConfig):
            raise ValueError(f"sli must be a SliConfig, got {type(self.sli).__name__}")


# --------------------------------------------------------------------------- bookkeeping
class _Clock:
    """Wall-clock and CPU seconds of named stages (CPU: this process, all threads)."""

    def __init__(self):
        self.stages: dict[str, dict[str, float]] = {}

    @contextlib.contextmanager
    def stage(self, name: str):
        wall, cpu = time.perf_counter(), time.process_time()
        try:
            yield
        finally:
            self.stages[name] = {"wall_seconds": time.perf_counter() - wall,
                                 "cpu_seconds": time.process_time() - cpu}

    def total(self) -> dict[str, float]:
        return {k: float(sum(s[k] for s in self.stages.values())) for k in ("wall_seconds", "cpu_seconds")}


def _logger(enabled: bool) -> Callable[[str], None]:
    def log(message: str) -> None:
        if enabled:
            print(f"[audit {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)
    return log


def _bar(items, *, enabled: bool, desc: str):
    if not enabled:
        return items
    from tqdm.auto import tqdm

    return tqdm(items, desc=desc, leave=False)


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


# --------------------------------------------------------------------------- membership
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


def audit_membership_of_run(art: RunArtifacts, clients: list[int], settings: AuditSettings,
                            clock: _Clock, log, cache: dict) -> dict:
    """Membership attacks on every audited client; the ``membership`` section of audit.json."""
    cfg = art.cfg
    epochs = _reference_epochs(art, settings)
    per_client, strongest, sizes, rmia_a = {}, {}, {}, {}
    for cid in _bar(clients, enabled=settings.progress, desc="membership (clients)"):
        model, arch = art.models[cid]
        client = art.federation.clients[cid]
        with clock.stage(f"membership client {cid}"):
            refs, population, a = None, None, None
            if settings.reference_models:
                key = ("refs", art.federation.spec, cid, arch, epochs, settings.reference_models,
                       cfg["batch_size"], cfg["lr"], settings.seed)
                rx, ry, zx, zy = _reference_data(art, cid, settings.seed, with_population=True)
                ref_seed = derive_seed(settings.seed, "reference", cid)
                if key not in cache:
                    cache[key] = train_reference_models(
                        rx, ry, num_classes=art.num_classes, n_models=settings.reference_models, arch=arch,
                        subsample=0.5, epochs=epochs, batch_size=cfg["batch_size"], lr=cfg["lr"],
                        seed=ref_seed, device=settings.device)
                refs = cache[key]
                if settings.rmia:
                    from .rmia import choose_offline_a

                    population = (zx, zy)
                    masks = []
                    for subset in reference_subsets(len(rx), settings.reference_models, 0.5, ref_seed):
                        mask = np.zeros(len(rx), bool)
                        mask[subset] = True
                        masks.append(mask)
                    a_key = ("rmia-a",) + key
                    if a_key not in cache:
                        cache[a_key] = choose_offline_a(refs, rx, ry, masks, zx, zy, device=settings.device)
                    rmia_a[str(cid)] = {**cache[a_key], "population": int(len(zy))}
                    a = cache[a_key]["a"]
            res = audit_membership(
                model, np.array(client.train_x), client.train_y, np.array(client.test_x), client.test_y,
                reference_models=refs, device=settings.device, seed=derive_seed(settings.seed, "mia", cid),
                n_augment=max(1, settings.label_only_augment), population=population, rmia_a=a,
                n_boot=settings.bootstrap,
            )
        per_client[str(cid)] = {name: _metrics_for_json(m) for name, m in res.items()}
        best = max(res, key=lambda name: res[name]["auc"])
        strongest[str(cid)] = {"attack": best, **{k: res[best][k] for k in ("auc", "tpr_at_0.1fpr", "tpr_at_1fpr")}}
        sizes[str(cid)] = {"architecture": arch, "n_members": res[best]["n_members"],
                           "n_nonmembers": res[best]["n_nonmembers"]}
        log(f"membership client {cid} ({arch}): " + ", ".join(
            f"{name} AUC {m['auc']:.3f}" for name, m in res.items()))
    worst = {attack: {**w, "client": str(w["client"])} for attack, w in worst_client(
        {cid: {a: {"auc": m["auc"]} for a, m in r.items()} for cid, r in per_client.items()}).items()}
    for attack, w in worst.items():
        m = per_client[w["client"]][attack]
        w["tpr_at_0.1fpr"], w["tpr_at_1fpr"] = m["tpr_at_0.1fpr"], m["tpr_at_1fpr"]
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


# --------------------------------------------------------------------------- inversion
def pick_lokt_targets(art: RunArtifacts, candidates: Iterable[int], count: int) -> list[int]:
    """``count`` candidates with the most never-held classes (ties: lower id first)."""
    ranked = sorted(candidates, key=lambda c: (-len(art.never_held_classes(c)), c))
    return sorted(ranked[:count])


def _judge_arch(archs: Iterable[str]) -> str:
    used = set(archs)
    return next((a for a in _JUDGE_ARCHS if a not in used), _JUDGE_ARCHS[0])


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
                        seed=derive_seed(cfg["seed"], "init", cid))
    train_supervised(model, x, y, epochs=max(1, art.local_training_epochs()), batch_size=cfg["batch_size"],
                     lr=cfg["lr"], seed=derive_seed(cfg["seed"], "audit-local", cid), device=settings.device)
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


def get_judge(art: RunArtifacts, settings: AuditSettings, clock: _Clock, log, cache: dict):
    """The independent judge (trained once per data and seed, shared by LOKT and the soft-label
    inversion) and what the report says about it."""
    from fedkd.training import evaluate_accuracy, predict_logits

    px, py = _all_private(art)
    judge_arch = _judge_arch(art.cfg["models"])  # every architecture of the run, audited or not
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
                           clock: _Clock, log, cache: dict) -> tuple[dict, dict]:
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
                   art.cfg["batch_size"], art.cfg["lr"], art.cfg["seed"], settings.lokt,
                   art.cfg["canaries.enabled"], settings.seed, settings.evaluator_epochs)
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


# --------------------------------------------------------------------------- run records
def canary_series(rounds: list[dict], references: int | None = None) -> dict | None:
    """Canary exposure per round from metrics.jsonl, or None when the run planted none.

    ``references`` (the run's ``canaries.references``) gives the largest possible
    exposure, log2(references) bits.
    """
    if not any("canary_exposure_owner" in r for r in rounds):
        return None
    return {
        "max_exposure": float(np.log2(references)) if references else None,
        "round": [int(r["round"]) for r in rounds],
        "owner": [finite_or_none(r.get("canary_exposure_owner")) for r in rounds],
        "peers_mean": [finite_or_none(r.get("canary_exposure_peers_mean")) for r in rounds],
        "peers_max": [finite_or_none(r.get("canary_exposure_peers_max")) for r in rounds],
    }


def fusion_weights(rounds: list[dict]) -> dict | None:
    """The last round's N x N fusion weights (KnFu's neighbour graph), or None."""
    last = next((r for r in reversed(rounds) if r.get("weights")), None)
    if last is None:
        return None
    from fedkd.metrics import weight_matrix

    full = weight_matrix(last, max(last["fused_clients"]) + 1)  # N x N over the ids fused in that round
    return {"round": int(last["round"]), "weights": [[float(v) for v in row] for row in full],
            "neighbour_counts": last.get("neighbour_counts")}


def run_facts(art: RunArtifacts) -> dict:
    """What was audited: the setting a reader needs next to the numbers."""
    cfg, s = art.cfg, art.summary
    privacy = s.get("privacy", {})
    return {
        "run_dir": str(art.run_dir), "dataset": cfg["dataset"], "algorithm": cfg["algorithm"],
        "num_clients": cfg["num_clients"], "rounds": cfg["rounds"], "alpha": cfg["alpha"],
        "partition": cfg["partition"], "models": list(cfg["models"]), "seed": cfg["seed"],
        "transfer_size": cfg["transfer_size"], "class_names": list(art.federation.class_names),
        "swing": bool(cfg["privacy.swing"]),
        "noise_scale": cfg["privacy.noise_scale"] if cfg["privacy.swing"] else None,
        "epsilon": finite_or_none(privacy.get("epsilon")) if privacy else None,
        "training_epsilon": finite_or_none(privacy.get("training_epsilon")) if privacy else None,
        "training_delta": privacy.get("training_delta") if privacy else None,
        "canaries": bool(cfg["canaries.enabled"]),
        "alma": finite_or_none(s.get("alma")), "global_acc": finite_or_none(s.get("global_acc")),
        "label_histograms": [[int(v) for v in c.label_histogram] for c in art.federation.clients],
    }


# --------------------------------------------------------------------------- entry points
def audit_loaded_run(art: RunArtifacts, settings: AuditSettings, *, cache: dict | None = None) -> tuple[dict, dict]:
    """Run every audit on loaded artifacts; returns (audit.json content, images for the report).

    Membership covers ``settings.clients`` (all loaded models when None); LOKT covers
    ``settings.lokt_clients``, or picks from the membership clients.
    """
    cache = {} if cache is None else cache
    log = _logger(settings.progress)
    clock = _Clock()
    clients = sorted(settings.clients) if settings.clients is not None else sorted(art.models)
    missing = [c for c in clients + list(settings.lokt_clients or ()) if c not in art.models]
    if missing:
        raise ValueError(f"clients {missing} are not in this run or their models were not loaded "
                         f"(this run has ids 0..{art.cfg['num_clients'] - 1})")
    log(f"auditing {art.run_dir}: {art.cfg['algorithm']} on {art.cfg['dataset']}, clients {clients}")
    membership = audit_membership_of_run(art, clients, settings, clock, log, cache)
    if settings.lokt_clients is not None:
        targets = sorted(settings.lokt_clients)
    else:
        targets = pick_lokt_targets(art, clients, settings.lokt_targets)
    images: dict = {}
    inversion = None
    if targets:
        inversion, images = audit_inversion_of_run(art, targets, settings, clock, log, cache)
    sli_clients = clients if settings.sli_clients is None else sorted(settings.sli_clients)
    soft_label_inversion = None
    if sli_clients:
        from .sli_of_run import audit_soft_label_inversion_of_run

        judge, judge_info = get_judge(art, settings, clock, log, cache)
        with clock.stage("soft-label inversion (server)"):
            soft_label_inversion, sli_images = audit_soft_label_inversion_of_run(
                art, sli_clients, judge, judge_info, settings, log)
        images["soft_label_inversion"] = sli_images
        images.setdefault("class_means", _class_means(*_all_private(art), art.num_classes))
    empirical = None
    if settings.one_run_canaries:
        from .epsilon_of_run import audit_empirical_epsilon_of_run

        with clock.stage("empirical epsilon (one-run audit)"):
            empirical = audit_empirical_epsilon_of_run(art, settings, log)
    dp_check = None
    if settings.one_run_canaries:
        from .dp_check import audit_dp_check_of_run

        with clock.stage("DP check (one-run audit of DP-SGD)"):
            dp_check = audit_dp_check_of_run(art, settings, log)
    from .label_distribution import audit_label_distribution_of_run

    with clock.stage("label-distribution inference (server)"):
        label_distribution = audit_label_distribution_of_run(art, clients, settings)
    result = {
        "run": run_facts(art),
        "dp_check": dp_check,
        "label_distribution_inference": label_distribution,
        "membership": membership,
        "inversion": inversion,
        "soft_label_inversion": soft_label_inversion,
        "empirical_epsilon": empirical,
        "canaries": canary_series(art.rounds, art.cfg["canaries.references"]),
        "fusion_weights": fusion_weights(art.rounds),
        "settings": dataclasses.asdict(settings),
        "timing": {"stages": clock.stages, **clock.total()},
    }
    return clean_json(result), images


def clean_json(value):
    """Plain JSON types: NaN/inf -> None, numpy scalars -> Python, tuples -> lists, keys -> str."""
    if isinstance(value, dict):
        return {str(k): clean_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean_json(v) for v in value]
    if isinstance(value, np.ndarray):
        return clean_json(value.tolist())
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return finite_or_none(value)
    return value


def audit_run(run_dir, settings: AuditSettings | None = None, *, out_dir=None, cache: dict | None = None,
              report: bool = True) -> dict:
    """Audit the run in ``run_dir``; write ``audit.json`` and ``report.html`` into ``out_dir``.

    Parameters
    ----------
    run_dir : str or Path
        A ``fedkd simulate`` output folder, with saved models (``save_models=true``).
    settings : AuditSettings, optional
    out_dir : str or Path, optional
        Default ``<run_dir>/audit``.
    cache : dict, optional
        Shared between calls on runs with the same data (a privacy sweep): the judge, the
        reference models and the local-only baseline are trained once.
    report : bool
        Also render ``report.html``.

    Returns
    -------
    result : dict
        The content of ``audit.json``, whose ``paths`` say where the files went.
    """
    from fedkd.metrics import write_json_atomic

    settings = settings or AuditSettings()
    to_load = None
    if settings.clients is not None:
        to_load = sorted(set(settings.clients) | set(settings.lokt_clients or ()))
    art = load_run(run_dir, to_load)
    result, images = audit_loaded_run(art, settings, cache=cache)
    out = Path(out_dir) if out_dir is not None else Path(run_dir) / "audit"
    out.mkdir(parents=True, exist_ok=True)
    result["paths"] = {"audit_json": str(out / "audit.json")}
    if report:
        from fedkd.report.audit_report import render_run_report

        result["paths"]["report_html"] = str(out / "report.html")
        render_run_report(result, images, out / "report.html")
    write_json_atomic(out / "audit.json", result)
    return result
