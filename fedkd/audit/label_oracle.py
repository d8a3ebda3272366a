"""Top-1 label access to a target model, with every queried sample counted.

The label-only attacker of LOKT sees nothing but the predicted class of each image it
submits. :class:`LabelOracle` enforces that (no probabilities leave it) and counts
the images it labels, so an attack can report its query cost and respect a budget.
"""

from __future__ import annotations

import numpy as np
import torch

from ._common import as_device

__all__ = ["LabelOracle", "QueryBudgetExceeded"]


class QueryBudgetExceeded(RuntimeError):
    """Raised when a query would take a :class:`LabelOracle` past its budget."""


class LabelOracle:
    """Hard-label (top-1) access to a classifier that counts the images it labels.

    Parameters
    ----------
    model : torch.nn.Module
        The target; maps images (B, C, H, W) to logits (B, num_classes). It is moved
        to ``device`` and put in eval mode.
    device : str or torch.device
        Where the target runs.
    budget : int or None
        Maximum number of images the oracle will ever label; ``None`` for no limit.
        A query that would exceed it raises :class:`QueryBudgetExceeded` and is not
        answered (nor counted).
    batch_size : int
        Images per forward pass (memory only; it does not change the answers).

    Attributes
    ----------
    queries : int
        Images labelled so far (one query = one image).
    calls : int
        Number of ``__call__`` invocations that were answered.
    """

    def __init__(self, model: torch.nn.Module, *, device="cpu", budget: int | None = None,
                 batch_size: int = 1024):
        if budget is not None and (isinstance(budget, bool) or not isinstance(budget, (int, np.integer))
                                   or budget < 0):
            raise ValueError(f"budget must be a non-negative integer or None, got {budget!r}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        self.device = as_device(device)
        self._model = model.to(self.device).eval()
        self.budget = None if budget is None else int(budget)
        self.batch_size = int(batch_size)
        self.queries = 0
        self.calls = 0

    @property
    def remaining(self) -> int | None:
        """Queries left before the budget is exhausted (``None`` without a budget)."""
        return None if self.budget is None else self.budget - self.queries

    def __call__(self, x):
        """Top-1 labels of a batch of images.

        Parameters
        ----------
        x : ndarray or torch.Tensor of shape (B, C, H, W), values in [0, 1]

        Returns
        -------
        labels : int64 ndarray of shape (B,) for array input, or a long tensor on
            ``x``'s device for tensor input.
        """
        as_numpy = not isinstance(x, torch.Tensor)
        xt = torch.as_tensor(np.asarray(x, dtype=np.float32)) if as_numpy else x.detach()
        if xt.ndim != 4:
            raise ValueError(f"x must be shaped (B, C, H, W), got shape {tuple(xt.shape)}")
        n = int(xt.shape[0])
        if self.budget is not None and self.queries + n > self.budget:
            raise QueryBudgetExceeded(
                f"labelling {n} more images would exceed the query budget "
                f"({self.queries} used of {self.budget})"
            )
        out = []
        with torch.no_grad():
            for start in range(0, n, self.batch_size):
                chunk = xt[start:start + self.batch_size].to(self.device, dtype=torch.float32)
                out.append(self._model(chunk).argmax(dim=1))
        labels = torch.cat(out) if out else torch.empty(0, dtype=torch.long, device=self.device)
        self.queries += n
        self.calls += 1
        if as_numpy:
            return labels.cpu().numpy().astype(np.int64)
        return labels.to(xt.device)
