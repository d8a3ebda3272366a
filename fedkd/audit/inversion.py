"""Label-only model inversion (LOKT) and how to score it.

Threat model: a curious peer or server can submit images to a client's model and
read back only the top-1 label (a :class:`LabelOracle`), and it holds public
unlabelled images (the transfer set). It wants to reconstruct what the client's
private data of a class looks like.

The attack, after LOKT (Nguyen et al., NeurIPS 2023), in three stages:

1. knowledge transfer: train a T-ACGAN on the public images with the target's labels
   (:func:`fedkd.audit.tacgan.train_tacgan`);
2. surrogates: train classifiers on class-balanced generated images labelled by the
   target (:func:`train_surrogates`); the T-ACGAN's class head is one more surrogate;
3. white-box inversion against the surrogates: optimise generator latents so the
   surrogates assign the target class (:func:`invert`).

Scoring (:func:`score_reconstructions`): an independent evaluation classifier, of
another architecture and trained on *all* private training data
(:func:`train_evaluator`), judges whether each reconstruction shows its class
(attack accuracy, top-1 and top-5); the L2 distance from each reconstruction to the
nearest private sample of its class says how close it comes to real private images.
:func:`random_latent_baseline` gives the chance floor of the same generator.

:func:`lokt_attack` runs everything for any subset of classes, so a cross-client
audit can invert exactly the classes a target never held in its own data.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fedkd.seeding import derive_seed

from ._common import as_device, check_images, check_pair, check_positive_int, progress_bar
from .label_oracle import LabelOracle
from .tacgan import ConditionalGenerator, generate, train_tacgan

__all__ = [
    "LoktConfig",
    "surrogate_dataset",
    "fit_surrogates",
    "train_surrogates",
    "invert",
    "train_evaluator",
    "score_reconstructions",
    "random_latent_baseline",
    "lokt_attack",
]


@dataclasses.dataclass(frozen=True)
class LoktConfig:
    """Settings of the whole LOKT pipeline; the defaults suit 8x8 digits on a CPU.

    T-ACGAN (see :func:`fedkd.audit.tacgan.train_tacgan`): ``gan_steps``,
    ``gan_batch_size``, ``gan_warmup`` (None = steps // 5), ``gan_n_dis``, ``gan_lr``,
    ``z_dim``, ``gan_hidden``, ``gan_arch``, ``class_weight``, ``diversity_weight``,
    ``label_public``.

    Surrogates (see :func:`train_surrogates`): ``surrogate_archs`` (names for
    ``fedkd.models.build_model``), ``use_discriminator`` (add the T-ACGAN's class
    head), ``surrogate_per_class`` generated images per class, ``surrogate_epochs``,
    ``surrogate_batch_size``, ``surrogate_lr``.

    Inversion (see :func:`invert`): ``n_per_class`` reconstructions per class,
    ``invert_steps``, ``invert_lr``, ``invert_loss`` ("margin" or "ce"),
    ``prior_weight``, ``invert_augment``.
    """

    gan_steps: int = 1500
    gan_batch_size: int = 64
    gan_warmup: int | None = None
    gan_n_dis: int = 1
    gan_lr: float = 1e-3
    z_dim: int = 32
    gan_hidden: int = 128
    gan_arch: str = "auto"
    class_weight: float = 1.0
    diversity_weight: float = 0.1
    label_public: bool = True
    surrogate_archs: tuple[str, ...] = ("cnn_small",)
    use_discriminator: bool = True
    surrogate_per_class: int = 100
    surrogate_epochs: int = 20
    surrogate_batch_size: int = 64
    surrogate_lr: float = 1e-3
    n_per_class: int = 16
    invert_steps: int = 200
    invert_lr: float = 0.05
    invert_loss: str = "margin"
    prior_weight: float = 1e-2
    invert_augment: bool = True

    def expected_queries(self, n_public: int, num_classes: int) -> int:
        """Label queries :func:`lokt_attack` will spend with these settings."""
        warmup = self.gan_steps // 5 if self.gan_warmup is None else self.gan_warmup
        return (
            n_public * int(self.label_public)
            + (self.gan_steps - warmup) * self.gan_n_dis * self.gan_batch_size
            + num_classes * self.surrogate_per_class * int(bool(self.surrogate_archs))
        )


# --------------------------------------------------------------------------- surrogates
def surrogate_dataset(
    generator: ConditionalGenerator,
    oracle: LabelOracle,
    *,
    n_per_class: int,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Generate a class-balanced image set and label it with the target.

    Spends ``n_per_class * generator.num_classes`` queries.

    Returns
    -------
    x : ndarray of shape (n_per_class * num_classes, C, H, W), float32
        Generated images.
    y_target : ndarray of shape (same,), int64
        The oracle's label of every image (what surrogates learn).
    y_conditioned : ndarray of shape (same,), int64
        The class each image was generated for; its agreement with ``y_target``
        says how well the generator has absorbed the target's classes.
    """
    n_per_class = check_positive_int(n_per_class, "n_per_class")
    y_cond = np.repeat(np.arange(generator.num_classes, dtype=np.int64), n_per_class)
    x = generate(generator, y_cond, seed=seed)
    return x, oracle(x), y_cond


def fit_surrogates(
    x,
    y,
    *,
    num_classes: int,
    archs: Sequence[str] = ("cnn_small",),
    epochs: int = 20,
    batch_size: int = 64,
    lr: float = 1e-3,
    seed: int = 0,
    device="cpu",
) -> list[nn.Module]:
    """Train one classifier per architecture name on (x, y) with ``fedkd.training``.

    Returns the models in eval mode, in the order of ``archs``.
    """
    from fedkd.models import build_model
    from fedkd.training import train_supervised

    x, y = check_pair(x, y, num_classes)
    dev = as_device(device)
    models = []
    for k, arch in enumerate(archs):
        s = derive_seed(seed, "surrogate", k)
        model = build_model(arch, tuple(x.shape[1:]), num_classes, seed=s)
        train_supervised(model, x, y, epochs=epochs, batch_size=batch_size, lr=lr, seed=s, device=dev)
        models.append(model.to(dev).eval())
    return models


def train_surrogates(
    generator: ConditionalGenerator,
    oracle: LabelOracle,
    *,
    archs: Sequence[str] = ("cnn_small",),
    n_per_class: int = 100,
    epochs: int = 20,
    batch_size: int = 64,
    lr: float = 1e-3,
    seed: int = 0,
    device="cpu",
) -> list[nn.Module]:
    """Surrogate classifiers trained on generated images labelled by the target.

    :func:`surrogate_dataset` followed by :func:`fit_surrogates`; spends
    ``n_per_class * generator.num_classes`` queries.

    Parameters
    ----------
    generator : ConditionalGenerator
        A trained T-ACGAN generator.
    oracle : LabelOracle
        The target, top-1 access.
    archs : sequence of str
        ``fedkd.models.build_model`` names, one surrogate each.
    n_per_class : int
        Generated images per class.
    epochs, batch_size, lr : training settings for ``fedkd.training.train_supervised``.
    seed : int
    device : str or torch.device

    Returns
    -------
    surrogates : list of torch.nn.Module, in eval mode
    """
    x, y, _ = surrogate_dataset(generator, oracle, n_per_class=n_per_class, seed=derive_seed(seed, "data"))
    return fit_surrogates(
        x, y, num_classes=generator.num_classes, archs=archs, epochs=epochs,
        batch_size=batch_size, lr=lr, seed=seed, device=device,
    )


# --------------------------------------------------------------------------- inversion
def _random_shift(images: torch.Tensor, max_shift: int, rng: torch.Generator) -> torch.Tensor:
    """Translate the whole batch by a random offset (zero padding); differentiable."""
    if max_shift == 0:
        return images
    h, w = images.shape[-2:]
    dy, dx = (int(v) for v in torch.randint(0, 2 * max_shift + 1, (2,), generator=rng))
    padded = F.pad(images, (max_shift, max_shift, max_shift, max_shift))
    return padded[..., dy:dy + h, dx:dx + w]


def _margin_loss(logits: torch.Tensor, target: int) -> torch.Tensor:
    """Best other logit minus the target logit (PLG-MI's max-margin loss)."""
    true = logits[:, target]
    others = logits.clone()
    others[:, target] = float("-inf")
    return (others.max(dim=1).values - true).mean()


def invert(
    generator: ConditionalGenerator,
    surrogates: Sequence[nn.Module],
    target_class: int,
    *,
    n: int = 16,
    steps: int = 200,
    lr: float = 0.05,
    loss: str = "margin",
    prior_weight: float = 1e-2,
    augment: bool = True,
    seed: int = 0,
    device=None,
) -> np.ndarray:
    """White-box inversion against surrogates: optimise latents toward a class.

    The generator is frozen and conditioned on ``target_class``; ``n`` latents start
    from N(0, I) and follow Adam on

        mean over surrogates of loss(surrogate(G(z, c)), c) + prior_weight * mean(z ** 2)

    The prior term keeps latents where the generator was trained, so images stay
    realistic rather than adversarial. With ``augment``, each step scores two
    randomly shifted copies (up to 1/8 of the image side), which favours features
    that survive small translations, as in LOKT's attack stage.

    Parameters
    ----------
    generator : ConditionalGenerator
    surrogates : sequence of nn.Module
        White-box classifiers (logits out) standing in for the target.
    target_class : int
    n : int
        Reconstructions to produce.
    steps : int
        Adam steps.
    lr : float
    loss : {"margin", "ce"}
        Max-margin (default; keeps pushing once the class wins) or cross-entropy.
    prior_weight : float, >= 0
    augment : bool
    seed : int
        Seeds the initial latents and the shifts.
    device : str, torch.device or None
        Defaults to the generator's device.

    Returns
    -------
    images : ndarray of shape (n, C, H, W), float32 in [0, 1]
    """
    if not surrogates:
        raise ValueError("surrogates must hold at least one model")
    if isinstance(target_class, bool) or not isinstance(target_class, (int, np.integer)) \
            or not 0 <= target_class < generator.num_classes:
        raise ValueError(f"target_class must be in range({generator.num_classes}), got {target_class!r}")
    n = check_positive_int(n, "n")
    steps = check_positive_int(steps, "steps")
    if loss not in ("margin", "ce"):
        raise ValueError(f"loss must be 'margin' or 'ce', got {loss!r}")
    if not prior_weight >= 0:
        raise ValueError(f"prior_weight must be >= 0, got {prior_weight!r}")
    dev = as_device(device) if device is not None else next(generator.parameters()).device
    generator = generator.to(dev).eval()
    for s in surrogates:
        s.to(dev).eval()
    # Freeze everything but the latents (and restore the flags afterwards).
    frozen = [p for m in (generator, *surrogates) for p in m.parameters() if p.requires_grad]
    for p in frozen:
        p.requires_grad_(False)

    rng = torch.Generator().manual_seed(int(seed))
    z = torch.randn(n, generator.z_dim, generator=rng).to(dev).requires_grad_(True)
    labels = torch.full((n,), int(target_class), dtype=torch.long, device=dev)
    target = int(target_class)
    side = min(generator.image_shape[1:])
    max_shift = max(1, side // 8) if augment else 0
    opt = torch.optim.Adam([z], lr=lr)
    try:
        for _ in range(steps):
            images = generator(z, labels)
            views = [_random_shift(images, max_shift, rng) for _ in range(2)] if augment else [images]
            total = 0.0
            for model in surrogates:
                for view in views:
                    logits = model(view)
                    total = total + (_margin_loss(logits, target) if loss == "margin"
                                     else F.cross_entropy(logits, labels))
            objective = total / (len(surrogates) * len(views)) + prior_weight * z.pow(2).mean()
            opt.zero_grad(set_to_none=True)
            objective.backward()
            opt.step()
        with torch.no_grad():
            out = generator(z, labels).cpu().numpy().astype(np.float32)
    finally:
        for p in frozen:
            p.requires_grad_(True)
    return out


# --------------------------------------------------------------------------- scoring
def train_evaluator(
    x_private,
    y_private,
    *,
    num_classes: int,
    arch: str = "cnn_medium",
    epochs: int = 30,
    batch_size: int = 64,
    lr: float = 1e-3,
    seed: int = 0,
    device="cpu",
) -> nn.Module:
    """The independent judge of reconstructions: a classifier trained on all private data.

    Use an architecture different from the target's, so that the judge does not share
    the target's quirks (a reconstruction that only fools the target's architecture
    should not count as a success).

    Parameters
    ----------
    x_private : ndarray of shape (N, C, H, W), float32 in [0, 1]
        The union of every client's private training data.
    y_private : ndarray of shape (N,), int64
    num_classes : int
    arch : str
        ``fedkd.models.build_model`` name.
    epochs, batch_size, lr : settings for ``fedkd.training.train_supervised``.
    seed : int
    device : str or torch.device

    Returns
    -------
    evaluator : torch.nn.Module, in eval mode
    """
    from fedkd.models import build_model
    from fedkd.training import train_supervised

    x, y = check_pair(x_private, y_private, num_classes, "x_private", "y_private")
    dev = as_device(device)
    model = build_model(arch, tuple(x.shape[1:]), num_classes, seed=seed)
    train_supervised(model, x, y, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, device=dev)
    return model.to(dev).eval()


def _nearest_distance(queries: np.ndarray, references: np.ndarray, chunk: int = 1024) -> np.ndarray:
    """L2 distance from each query row to its nearest reference row (both flattened)."""
    q = torch.from_numpy(queries.reshape(len(queries), -1).astype(np.float32))
    r = torch.from_numpy(references.reshape(len(references), -1).astype(np.float32))
    best = torch.full((len(q),), float("inf"))
    for start in range(0, len(r), chunk):
        # exact differences (not the |a|^2+|b|^2-2ab shortcut), so a sample at distance 0 scores exactly 0
        dist = torch.cdist(q, r[start:start + chunk], compute_mode="donot_use_mm_for_euclid_dist")
        best = torch.minimum(best, dist.min(dim=1).values)
    return best.numpy().astype(np.float64)


def score_reconstructions(
    reconstructions,
    classes: Sequence[int],
    evaluator: nn.Module,
    *,
    private_x=None,
    private_y=None,
    public_x=None,
    device="cpu",
) -> dict:
    """Judge reconstructions with the evaluation classifier and by nearest-sample distance.

    Parameters
    ----------
    reconstructions : ndarray of shape (K, n, C, H, W), float32 in [0, 1]
        ``n`` images for each of ``K`` attacked classes.
    classes : sequence of int, length K
        The class each row of reconstructions was made for.
    evaluator : nn.Module
        The independent classifier (:func:`train_evaluator`).
    private_x, private_y : ndarrays (N, C, H, W) and (N,), optional
        All private training data; enables ``knn_distance``.
    public_x : ndarray (P, C, H, W), optional
        The attacker's public images; enables ``knn_distance_public``.
    device : str or torch.device

    Returns
    -------
    scores : dict
        ``attack_acc_top1`` / ``attack_acc_top5`` -- fraction of reconstructions the
        evaluator puts in their class (top-5: among its five best classes);
        ``per_class_acc`` / ``per_class_acc_top5`` -- ``{class: accuracy}``;
        ``chance_top1`` = 1 / num_classes and ``chance_top5`` = min(5, C) / C;
        ``knn_distance`` -- mean L2 distance from a reconstruction to the nearest private
        sample *of its class* (lower = closer to real private data; NaN where a class
        has no private sample), with ``knn_distance_per_class``;
        ``knn_distance_public`` -- the same to the nearest public image of any class:
        reconstructions much closer to private than to public data point at leakage of
        private specifics rather than of what the public set already shows.
    """
    from fedkd.training import predict_logits

    rec = np.asarray(reconstructions)
    if rec.ndim != 5:
        raise ValueError(f"reconstructions must be shaped (K, n, C, H, W), got shape {rec.shape}")
    classes = [int(c) for c in classes]
    if len(classes) != rec.shape[0]:
        raise ValueError(f"classes has {len(classes)} entries but reconstructions has {rec.shape[0]} rows")
    k, n = rec.shape[:2]
    flat = check_images(rec.reshape(k * n, *rec.shape[2:]), "reconstructions")
    logits = torch.from_numpy(np.asarray(predict_logits(evaluator, flat, device=as_device(device))))
    num_classes = logits.shape[1]
    if max(classes) >= num_classes or min(classes) < 0:
        raise ValueError(f"classes must lie in range({num_classes}) of the evaluator, got {classes}")
    wanted = torch.tensor(np.repeat(classes, n))
    top5 = logits.topk(min(5, num_classes), dim=1).indices
    hit1 = (logits.argmax(dim=1) == wanted).numpy().reshape(k, n)
    hit5 = (top5 == wanted[:, None]).any(dim=1).numpy().reshape(k, n)
    out = {
        "classes": classes,
        "attack_acc_top1": float(hit1.mean()),
        "attack_acc_top5": float(hit5.mean()),
        "per_class_acc": {c: float(hit1[i].mean()) for i, c in enumerate(classes)},
        "per_class_acc_top5": {c: float(hit5[i].mean()) for i, c in enumerate(classes)},
        "chance_top1": 1.0 / num_classes,
        "chance_top5": min(5, num_classes) / num_classes,
    }
    if private_x is not None:
        px, py = check_pair(private_x, private_y, num_classes, "private_x", "private_y")
        per_class = {}
        for i, c in enumerate(classes):
            own = px[py == c]
            per_class[c] = float(_nearest_distance(rec[i], own).mean()) if len(own) else float("nan")
        values = [v for v in per_class.values() if np.isfinite(v)]
        out["knn_distance"] = float(np.mean(values)) if values else float("nan")
        out["knn_distance_per_class"] = per_class
    if public_x is not None:
        pub = check_images(public_x, "public_x")
        out["knn_distance_public"] = float(_nearest_distance(flat, pub).mean())
    return out


def random_latent_baseline(
    generator: ConditionalGenerator,
    classes: Sequence[int],
    evaluator: nn.Module,
    *,
    n_per_class: int = 16,
    seed: int = 0,
    private_x=None,
    private_y=None,
    public_x=None,
    device="cpu",
) -> dict:
    """Chance floor: the same generator's images from random latents *and random labels*.

    For every attacked class, ``n_per_class`` images are drawn with z ~ N(0, I) and a
    conditioning label drawn uniformly from all classes (the attacked class is *not*
    used), then scored exactly like reconstructions of that class. This measures how
    often the generator's output falls in a class by accident: about
    1 / num_classes for a class-balanced generator, more for a class the generator
    over-produces. An attack is only informative where it clearly beats this floor.

    Returns the :func:`score_reconstructions` dict plus ``images`` (K, n, C, H, W).
    """
    n_per_class = check_positive_int(n_per_class, "n_per_class")
    classes = [int(c) for c in classes]
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, generator.num_classes, size=len(classes) * n_per_class)
    images = generate(generator, labels, seed=derive_seed(seed, "latents")).reshape(
        len(classes), n_per_class, *generator.image_shape
    )
    out = score_reconstructions(
        images, classes, evaluator, private_x=private_x, private_y=private_y,
        public_x=public_x, device=device,
    )
    out["images"] = images
    return out


# --------------------------------------------------------------------------- the attack
def lokt_attack(
    target_model: nn.Module,
    public_x,
    classes: Sequence[int] | None,
    evaluator: nn.Module,
    private_x,
    private_y,
    *,
    num_classes: int,
    config: LoktConfig | None = None,
    budget: int | None = None,
    seed: int = 0,
    device="cpu",
    progress: bool = False,
) -> dict:
    """Run LOKT against one target model and score it.

    Parameters
    ----------
    target_model : nn.Module
        The attacked client's model; the attack only ever sees its top-1 labels.
    public_x : ndarray of shape (P, C, H, W), float32 in [0, 1]
        The attacker's public unlabelled images (the transfer set).
    classes : sequence of int or None
        Classes to reconstruct; None = all. For a cross-client audit pass the classes
        the target never held in its own data.
    evaluator : nn.Module
        Independent judge trained on all private data (:func:`train_evaluator`).
    private_x, private_y : ndarrays (N, C, H, W) float32 and (N,) int64
        All private training data (for the nearest-sample distance only; the
        attacker never sees it).
    num_classes : int
        Size of the target's label space.
    config : LoktConfig, optional
        Pipeline settings; defaults to ``LoktConfig()``.
    budget : int or None
        Maximum label queries; the attack raises
        :class:`fedkd.audit.label_oracle.QueryBudgetExceeded` if its settings need more
        (see ``LoktConfig.expected_queries``).
    seed : int
    device : str or torch.device
    progress : bool

    Returns
    -------
    result : dict
        Everything :func:`score_reconstructions` returns (``attack_acc_top1``,
        ``attack_acc_top5``, ``per_class_acc``, ``chance_top1``, ``knn_distance``, ...),
        plus ``queries`` (labels the target gave out), ``queries_by_stage``,
        ``reconstructions`` (K, n, C, H, W), ``random_latent`` (the chance-floor
        scores, :func:`random_latent_baseline` without its images),
        ``generator_agreement`` (fraction of class-conditioned generated images the
        target labels as their class: how much class knowledge was transferred),
        ``surrogate_agreement`` (per surrogate, agreement with the target's labels on
        the public images; only with ``label_public``) and ``config`` (as a dict).
    """
    from fedkd.training import predict_logits

    cfg = config if config is not None else LoktConfig()
    if not isinstance(cfg, LoktConfig):
        raise ValueError(f"config must be a LoktConfig, got {type(cfg).__name__}")
    pub = check_images(public_x, "public_x")
    px, py = check_pair(private_x, private_y, num_classes, "private_x", "private_y")
    classes = list(range(num_classes)) if classes is None else [int(c) for c in classes]
    if not classes:
        raise ValueError("classes must name at least one class (or be None for all)")
    bad = [c for c in classes if not 0 <= c < num_classes]
    if bad:
        raise ValueError(f"classes {bad} lie outside range(num_classes={num_classes})")
    if pub.shape[1:] != px.shape[1:]:
        raise ValueError(f"public_x images are {pub.shape[1:]} but private_x images are {px.shape[1:]}")
    if not cfg.surrogate_archs and not cfg.use_discriminator:
        raise ValueError("config needs at least one surrogate: surrogate_archs or use_discriminator")
    dev = as_device(device)
    oracle = LabelOracle(target_model, device=dev, budget=budget)
    stages = {}

    # Bought once, used by the T-ACGAN and again to measure surrogate agreement.
    public_labels = oracle(pub) if cfg.label_public else None
    stages["public_labels"] = oracle.queries
    gen, dis = train_tacgan(
        oracle, pub, num_classes, steps=cfg.gan_steps, batch_size=cfg.gan_batch_size,
        z_dim=cfg.z_dim, warmup=cfg.gan_warmup, n_dis=cfg.gan_n_dis, lr=cfg.gan_lr,
        class_weight=cfg.class_weight, diversity_weight=cfg.diversity_weight,
        label_public=cfg.label_public, public_labels=public_labels,
        hidden=cfg.gan_hidden, arch=cfg.gan_arch, seed=derive_seed(seed, "tacgan"), device=dev,
        progress=progress,
    )
    stages["tacgan_fakes"] = oracle.queries - stages["public_labels"]

    surrogates: list[nn.Module] = []
    agreement = float("nan")
    if cfg.surrogate_archs:
        before = oracle.queries
        sx, sy, s_cond = surrogate_dataset(
            gen, oracle, n_per_class=cfg.surrogate_per_class, seed=derive_seed(seed, "surrogate-data")
        )
        stages["surrogate_data"] = oracle.queries - before
        agreement = float((sy == s_cond).mean())
        surrogates += fit_surrogates(
            sx, sy, num_classes=num_classes, archs=cfg.surrogate_archs, epochs=cfg.surrogate_epochs,
            batch_size=cfg.surrogate_batch_size, lr=cfg.surrogate_lr,
            seed=derive_seed(seed, "surrogates"), device=dev,
        )
    if cfg.use_discriminator:
        surrogates.append(dis.classifier())

    surrogate_agreement = []
    if public_labels is not None:
        for s in surrogates:
            pred = predict_logits(s, pub, device=dev).argmax(axis=1)
            surrogate_agreement.append(float((pred == public_labels).mean()))

    recon = np.stack([
        invert(
            gen, surrogates, c, n=cfg.n_per_class, steps=cfg.invert_steps, lr=cfg.invert_lr,
            loss=cfg.invert_loss, prior_weight=cfg.prior_weight, augment=cfg.invert_augment,
            seed=derive_seed(seed, "invert", c), device=dev,
        )
        for c in progress_bar(classes, enabled=progress, desc="inversion", total=len(classes))
    ])
    result = score_reconstructions(
        recon, classes, evaluator, private_x=px, private_y=py, public_x=pub, device=dev
    )
    baseline = random_latent_baseline(
        gen, classes, evaluator, n_per_class=cfg.n_per_class, seed=derive_seed(seed, "baseline"),
        private_x=px, private_y=py, public_x=pub, device=dev,
    )
    baseline.pop("images")
    result.update(
        queries=oracle.queries,
        queries_by_stage={
            "public_labels": stages["public_labels"],
            "tacgan_fakes": stages["tacgan_fakes"],
            "surrogate_data": stages.get("surrogate_data", 0),
        },
        reconstructions=recon,
        random_latent=baseline,
        generator_agreement=agreement,
        surrogate_agreement=surrogate_agreement,
        config=dataclasses.asdict(cfg),
    )
    return result
