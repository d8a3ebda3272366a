"""Soft-label inversion by a curious server: what a client's uploads reveal about its private images.

After the paired-logits inversion (PLI) of Takahashi, Liu and Liu, "Breaching FedMD: Image
Recovery via Paired-Logits Inversion Attack" (CVPR 2023), adapted to what our server holds:

- the public transfer set X_t (images, no labels);
- client n's uploaded soft labels Q_n on X_t (after swing, when the run uses it);
- the targets T_n it sent to client n (the federation's fused knowledge of each X_t image).

The attack, for client n:

1. **Inversion model.** A decoder G_n learns, on the public pairs alone, to map the *paired*
   outputs u_i = [log Q_n(x_i), log T_n(x_i)] back to the image x_i (mean squared error). The
   pairing is PLI's idea: the gap between what the client says and what the federation says is
   what the client's private data added.
2. **Class queries.** For class c, the server takes the transfer images on which the client's
   confidence in c most exceeds the federation's (the largest log Q_n[i, c] − log T_n[i, c] among
   the images the client calls c; PLI's confidence-gap selection), pushes their client half
   towards c (Q ← (1 − λ) Q + λ e_c), and decodes: the images the client's private knowledge
   associates with class c.
3. **Judge.** An independent classifier trained on data the attacker never used (all clients'
   private data) says whether each reconstruction shows its class: top-1 attack accuracy per
   class, against chance 1 / C; nearest private (and public) image distances as in LOKT.

Why this matters: the uploads are the only thing soft-label sharing exposes, and they go to the
server every round; no query access to the client's model is needed. What it cannot do:
reconstruct what the public images never show. A class that is absent from the public set can
only come out as a public look-alike; the known-answer tests pin both cases down.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from ._common import as_device, check_images, seeded_torch

__all__ = ["SliConfig", "QUICK_SLI", "paired_inputs", "train_inversion_model", "class_queries",
           "soft_label_inversion"]

_EPS = 1e-6


@dataclasses.dataclass(frozen=True)
class SliConfig:
    """Budgets of the soft-label inversion.

    Attributes
    ----------
    epochs : training epochs of the inversion decoder over the transfer set.
    hidden : width of the decoder's hidden layers.
    lr : Adam learning rate.
    batch_size : decoder mini-batch size.
    n_per_class : reconstructions per class.
    push : λ, how far each query's client half is moved towards the attacked class.
    """

    epochs: int = 300
    hidden: int = 256
    lr: float = 2e-3
    batch_size: int = 64
    n_per_class: int = 8
    push: float = 0.5


QUICK_SLI = SliConfig(epochs=120)


def _log(p: np.ndarray) -> np.ndarray:
    return np.log(np.clip(np.asarray(p, np.float64), _EPS, 1.0)).astype(np.float32)


def paired_inputs(client_soft: np.ndarray, targets: np.ndarray | None) -> np.ndarray:
    """u_i = [log Q(x_i), log T(x_i)] (or log Q alone when the server sent no targets)."""
    q = _log(client_soft)
    return q if targets is None else np.concatenate([q, _log(targets)], axis=1)


class _Decoder(nn.Module):
    def __init__(self, in_dim: int, shape: tuple[int, ...], hidden: int):
        super().__init__()
        self.shape = shape
        self.net = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, 2 * hidden), nn.ReLU(),
                                 nn.Linear(2 * hidden, int(np.prod(shape))), nn.Sigmoid())

    def forward(self, u):
        return self.net(u).view(-1, *self.shape)


def train_inversion_model(inputs: np.ndarray, public_x: np.ndarray, config: SliConfig, *, seed: int = 0,
                          device="cpu") -> nn.Module:
    """Fit G: paired soft labels -> image on the public pairs (mean squared error)."""
    dev = as_device(device)
    x = torch.from_numpy(np.array(public_x, np.float32)).to(dev)
    u = torch.from_numpy(np.array(inputs, np.float32)).to(dev)
    with seeded_torch(seed, dev):
        model = _Decoder(u.shape[1], tuple(x.shape[1:]), config.hidden).to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=config.lr)
    gen = torch.Generator().manual_seed(int(seed))
    model.train()
    for _ in range(config.epochs):
        perm = torch.randperm(len(x), generator=gen).to(dev)
        for start in range(0, len(x), config.batch_size):
            idx = perm[start:start + config.batch_size]
            loss = nn.functional.mse_loss(model(u[idx]), x[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model.eval()


def class_queries(client_soft: np.ndarray, targets: np.ndarray | None, cls: int, n: int,
                  push: float) -> tuple[np.ndarray, np.ndarray]:
    """Decoder inputs for class ``cls`` and the transfer rows they start from.

    Rows are ranked by the confidence gap log Q[i, cls] − log T[i, cls] among the rows the client
    labels ``cls`` (all rows when it labels none so, ranked by log Q[i, cls] alone then).
    """
    q = np.asarray(client_soft, np.float64)
    candidates = np.flatnonzero(q.argmax(axis=1) == cls)
    if candidates.size == 0:
        candidates = np.arange(len(q))
    gap = np.log(np.clip(q[candidates, cls], _EPS, 1))
    if targets is not None:
        gap = gap - np.log(np.clip(np.asarray(targets, np.float64)[candidates, cls], _EPS, 1))
    rows = candidates[np.argsort(-gap, kind="stable")][:n]
    if rows.size < n:  # fewer candidates than reconstructions: reuse the best ones
        rows = np.resize(rows, n)
    onehot = np.zeros(q.shape[1])
    onehot[cls] = 1.0
    pushed = (1 - push) * q[rows] + push * onehot
    return paired_inputs(pushed, None if targets is None else np.asarray(targets)[rows]), rows


def soft_label_inversion(public_x, client_soft, targets, judge: nn.Module, private_x, private_y, *,
                         num_classes: int, classes: Sequence[int] | None = None,
                         config: SliConfig = SliConfig(), seed: int = 0, device="cpu") -> dict:
    """Run the attack against one client's uploads and judge the reconstructions.

    Parameters
    ----------
    public_x : (M, C, H, W) the transfer images the uploads answer.
    client_soft : (M, K) the client's uploaded soft labels on them.
    targets : (M, K) the targets the server sent the client, or None.
    judge : independent classifier (trained on data the attacker could not use).
    private_x, private_y : private data, only to measure nearest-sample distances.
    num_classes : K.
    classes : classes to attack (default all).
    config : budgets.

    Returns
    -------
    dict with ``attack_acc_top1``, ``attack_acc_top5``, ``per_class_acc``, ``chance``,
    ``knn_distance`` (to the nearest private image of the class) and ``knn_distance_public``,
    ``reconstructions`` (K', n, C, H, W), ``classes`` and ``query_rows`` (transfer rows used).
    """
    from .inversion import score_reconstructions

    public_x = check_images(public_x, "public_x")
    q = np.asarray(client_soft, np.float64)
    if q.shape != (len(public_x), num_classes):
        raise ValueError(f"client_soft must be shaped ({len(public_x)}, {num_classes}), got {q.shape}")
    if targets is not None and np.asarray(targets).shape != q.shape:
        raise ValueError(f"targets must be shaped like client_soft {q.shape}, got {np.asarray(targets).shape}")
    classes = list(range(num_classes)) if classes is None else [int(c) for c in classes]
    if not classes or min(classes) < 0 or max(classes) >= num_classes:
        raise ValueError(f"classes must be a non-empty subset of range({num_classes}), got {classes}")
    dev = as_device(device)
    decoder = train_inversion_model(paired_inputs(q, targets), public_x, config, seed=seed, device=dev)
    recs, rows = [], {}
    with torch.no_grad():
        for c in classes:
            u, used = class_queries(q, targets, c, config.n_per_class, config.push)
            recs.append(decoder(torch.from_numpy(u).to(dev)).cpu().numpy())
            rows[c] = used.tolist()
    recs = np.clip(np.stack(recs), 0.0, 1.0).astype(np.float32)
    scored = score_reconstructions(recs, classes, judge, private_x=private_x, private_y=private_y,
                                   public_x=public_x, device=dev)
    return {"attack_acc_top1": scored["attack_acc_top1"], "attack_acc_top5": scored["attack_acc_top5"],
            "per_class_acc": scored["per_class_acc"], "chance": 1.0 / num_classes,
            "knn_distance": scored.get("knn_distance"), "knn_distance_public": scored.get("knn_distance_public"),
            "knn_distance_per_class": scored.get("knn_distance_per_class"),
            "reconstructions": recs, "classes": classes, "query_rows": rows}
