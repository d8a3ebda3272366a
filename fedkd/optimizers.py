"""The clients' optimisers: Adam and SGD with momentum, declared once for plain training and for DP-SGD.

Why plain training does not use ``torch.optim``: building any ``torch.optim.Optimizer`` (its
``add_param_group``) and its first ``step`` import ``torch._dynamo``, about 2.4 CPU seconds on the 2-core
machine, paid once by every process that trains: each client actor of a simulation and each deployed
ClientApp, before its first step (docs/performance.md §12). ``Adam`` and ``SGD`` below run the
single-tensor updates that ``torch.optim`` runs for CPU tensors, operation for operation and in the same
order, so the weights come out bit for bit the same (tests/test_optimizers.py trains with both). On CUDA,
``torch.optim`` would pick its multi-tensor ("foreach") kernels instead; these classes stay single-tensor
there, equal in exact arithmetic and as deterministic.

DP-SGD keeps ``torch.optim`` (``torch_optimizer``): Opacus' ``DPOptimizer`` wraps a ``torch.optim.Optimizer``.
"""
from __future__ import annotations

from collections.abc import Iterable

import torch

OPTIMIZERS = ("adam", "sgd")
ADAM_BETAS = (0.9, 0.999)
ADAM_EPS = 1e-8
SGD_MOMENTUM = 0.9


class _Optimizer:
    """What both keep: the parameters, the learning rate, and ``zero_grad`` (gradients set to None, as
    ``torch.optim``'s default; the argument is accepted for the same call)."""

    def __init__(self, params: Iterable[torch.Tensor], lr: float):
        self.params = list(params)
        self.lr = lr

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.params:
            p.grad = None


class Adam(_Optimizer):
    """``torch.optim.Adam(params, lr)`` with its defaults (no weight decay, no AMSGrad), on the CPU path."""

    def __init__(self, params: Iterable[torch.Tensor], lr: float):
        super().__init__(params, lr)
        self.steps = [0] * len(self.params)
        self.exp_avg: list[torch.Tensor | None] = [None] * len(self.params)
        self.exp_avg_sq: list[torch.Tensor | None] = [None] * len(self.params)

    @torch.no_grad()
    def step(self) -> None:
        beta1, beta2 = ADAM_BETAS
        for i, p in enumerate(self.params):
            if p.grad is None:
                continue
            if self.exp_avg[i] is None:
                self.exp_avg[i] = torch.zeros_like(p, memory_format=torch.preserve_format)
                self.exp_avg_sq[i] = torch.zeros_like(p, memory_format=torch.preserve_format)
            grad, exp_avg, exp_avg_sq = p.grad, self.exp_avg[i], self.exp_avg_sq[i]
            self.steps[i] += 1
            step = float(self.steps[i])  # torch keeps the count in a float32 tensor and reads it as a float
            exp_avg.lerp_(grad, 1 - beta1)
            exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
            bias_correction1 = 1 - beta1**step
            bias_correction2 = 1 - beta2**step
            denom = (exp_avg_sq.sqrt() / bias_correction2**0.5).add_(ADAM_EPS)
            p.addcdiv_(exp_avg, denom, value=-(self.lr / bias_correction1))


class SGD(_Optimizer):
    """``torch.optim.SGD(params, lr, momentum=0.9)`` (no dampening, no Nesterov, no weight decay)."""

    def __init__(self, params: Iterable[torch.Tensor], lr: float):
        super().__init__(params, lr)
        self.momentum_buffer: list[torch.Tensor | None] = [None] * len(self.params)

    @torch.no_grad()
    def step(self) -> None:
        for i, p in enumerate(self.params):
            if p.grad is None:
                continue
            buf = self.momentum_buffer[i]
            if buf is None:
                buf = self.momentum_buffer[i] = p.grad.detach().clone()
            else:
                buf.mul_(SGD_MOMENTUM).add_(p.grad, alpha=1)
            p.add_(buf, alpha=-self.lr)


def check_name(name: object) -> str:
    if name not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {name!r}")
    return name


def make_optimizer(name: str, params: Iterable[torch.Tensor], lr: float) -> Adam | SGD:
    """The optimiser of plain (non-DP) training."""
    return {"adam": Adam, "sgd": SGD}[check_name(name)](params, lr)


def torch_optimizer(name: str, params: Iterable[torch.Tensor], lr: float) -> torch.optim.Optimizer:
    """The same optimiser from ``torch.optim``, for Opacus' DPOptimizer to wrap."""
    if check_name(name) == "adam":
        return torch.optim.Adam(params, lr=lr, betas=ADAM_BETAS, eps=ADAM_EPS)
    return torch.optim.SGD(params, lr=lr, momentum=SGD_MOMENTUM)
