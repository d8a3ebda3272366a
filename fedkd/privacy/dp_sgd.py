"""DP-SGD for a client's private training (Abadi et al., CCS 2016), with Opacus.

What is protected
-----------------
One example of the client's private training set (add/remove, Opacus' relation). Every step on
private data clips each example's gradient to L2 norm ``clip`` and adds Gaussian noise of standard
deviation ``noise_multiplier * clip`` to their sum; batches are drawn by Poisson sampling (each
example independently with rate q = 1 / steps-per-epoch), which is what the accountant's
subsampled-Gaussian analysis assumes. The whole run's steps compose in Opacus' RDP accountant.
Everything the client releases afterwards -- soft labels, swing-protected or not, its final
model -- is post-processing of the DP model sequence, so it costs nothing more.

Distillation on the public transfer set
---------------------------------------
The distillation loss touches only public inputs and targets that are themselves functions of
DP uploads, so it needs no clipping and no noise. It is taken as its *own* step, with its own
plain optimiser and Opacus' per-sample hooks switched off, right after each private step:
``theta <- theta - lr * noisy_private_grad``, then ``theta <- theta - (lr * distill_weight) * public_grad``. The
private gradient is the only one computed on private data; the public step is a data-independent
function of the current (already private) parameters, i.e. post-processing between two DP steps,
and adaptive composition covers the sequence. (Summing the two losses into one backward would
instead put unclipped public gradients into the per-sample norms, or public terms into the noise
calibration; keeping them apart is simpler to argue.)

Randomness
----------
The noise and the Poisson sampling are what the guarantee rests on. In simulation they are
drawn from generators seeded from the run seed (reproducible studies); on real nodes from OS
entropy (``privacy.noise_seed``, the same rule as swing's noise in ``fedkd.privacy.release``).
"""
from __future__ import annotations

import math
import secrets
import warnings
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from fedkd.privacy.settings import PrivacySettings
from fedkd.seeding import derive_seed

__all__ = ["DpStep", "make_dp_compatible", "steps_per_epoch", "sample_rate",
           "noise_multiplier_for", "training_epsilon", "train_private", "dp_generators"]


@dataclass(frozen=True)
class DpStep:
    """One entry of a client's accountant history: ``steps`` private steps at this noise and rate."""

    noise_multiplier: float
    sample_rate: float
    steps: int


def make_dp_compatible(model: nn.Module) -> nn.Module:
    """The model as DP-SGD can train it: BatchNorm (which mixes examples of a batch, so one example's
    gradient is not its own) becomes GroupNorm, Opacus' fix; anything Opacus cannot fix is refused."""
    from opacus.validators import ModuleValidator

    fixed = model if ModuleValidator.is_valid(model) else ModuleValidator.fix(model)
    _check_dp_compatible(fixed)
    return fixed


def _check_dp_compatible(model: nn.Module) -> None:
    """Refuse a model DP-SGD cannot train; switch off in-place activations (same function, but an
    in-place op on the output of Opacus' backward hook is forbidden by autograd)."""
    from opacus.validators import ModuleValidator

    errors = ModuleValidator.validate(model, strict=False)
    if errors:
        raise ValueError(f"model {type(model).__name__} cannot be trained with DP-SGD ("
                         + "; ".join(str(e) for e in errors) + "); build it with make_dp_compatible")
    for module in model.modules():
        if getattr(module, "inplace", False) is True:
            module.inplace = False


def steps_per_epoch(n: int, batch_size: int) -> int:
    return max(1, math.ceil(n / batch_size))


def sample_rate(n: int, batch_size: int) -> float:
    """Poisson rate q = 1 / steps-per-epoch (Opacus' DPDataLoader): expected batch = n / steps."""
    return 1.0 / steps_per_epoch(n, batch_size)


def noise_multiplier_for(dp: PrivacySettings, n: int, batch_size: int, epochs_per_round: int) -> float:
    """The noise multiplier this client uses: ``dp_noise_multiplier``, or calibrated so that all rounds'
    steps (``rounds * epochs * steps_per_epoch``) spend at most ``dp_target_epsilon`` at ``delta``."""
    if dp.dp_target_epsilon <= 0:
        return dp.dp_noise_multiplier
    from opacus.accountants.utils import get_noise_multiplier

    steps = dp.rounds * epochs_per_round * steps_per_epoch(n, batch_size)
    if steps == 0:
        return dp.dp_noise_multiplier
    return float(get_noise_multiplier(target_epsilon=dp.dp_target_epsilon, target_delta=dp.delta,
                                      sample_rate=sample_rate(n, batch_size), steps=steps, accountant="rdp",
                                      epsilon_tolerance=0.01))


def training_epsilon(history: list[DpStep] | tuple[DpStep, ...], delta: float) -> float:
    """Epsilon of all recorded private steps at ``delta`` (Opacus' RDP accountant); inf if any had no noise."""
    history = [h for h in history if h.steps > 0]
    if not history:
        return 0.0
    if min(h.noise_multiplier for h in history) <= 0:
        return math.inf
    from opacus.accountants import RDPAccountant

    accountant = RDPAccountant()
    accountant.history = [(h.noise_multiplier, h.sample_rate, h.steps) for h in history]
    return float(accountant.get_epsilon(delta=delta))


def dp_generators(noise_seed: str, seed: int, client_id: int, round_num: int, *, simulated: bool,
                  device: torch.device) -> tuple[torch.Generator, torch.Generator]:
    """(sampling generator on the CPU, noise generator on ``device``): run-seeded in simulation, OS
    entropy on real nodes (``auto``), as ``privacy.noise_seed`` says."""
    mode = noise_seed if noise_seed != "auto" else ("derived" if simulated else "os")
    if mode == "os":
        seeds = (secrets.randbits(63), secrets.randbits(63))
    else:
        seeds = (derive_seed(seed, "dp-sampling", client_id, round_num),
                 derive_seed(seed, "dp-noise", client_id, round_num))
    return (torch.Generator().manual_seed(seeds[0]), torch.Generator(device=device).manual_seed(seeds[1]))


def _kd_loss(logits: torch.Tensor, targets: torch.Tensor, temperature: float) -> torch.Tensor:
    return F.kl_div(F.log_softmax(logits / temperature, dim=1), targets, reduction="batchmean") * temperature**2


def train_private(model: nn.Module, x: np.ndarray, y: np.ndarray, *, clip: float, noise_multiplier: float,
                  epochs: int, batch_size: int, lr: float, device: torch.device,
                  generators: tuple[torch.Generator, torch.Generator], optimizer: str = "adam",
                  public: tuple[np.ndarray, np.ndarray, float, float] | None = None) -> dict:
    """DP-SGD on (x, y), in place; optionally a plain distillation step on public data after each.

    public: (transfer_x, targets, temperature, distill_weight) for the joint order; the public step's
    optimiser runs at ``lr * distill_weight``.
    Returns ``loss`` (mean private cross-entropy of the last epoch), ``steps`` (private steps) and
    ``sample_rate``: what the accountant records as one ``DpStep``.
    """
    from opacus.data_loader import DPDataLoader
    from torch.utils.data import DataLoader, TensorDataset

    if clip <= 0 or not math.isfinite(clip):
        raise ValueError(f"privacy.dp_clip must be a finite number > 0, got {clip!r}")
    if noise_multiplier < 0:
        raise ValueError(f"privacy.dp_noise_multiplier must be >= 0, got {noise_multiplier!r}")
    _check_dp_compatible(model)
    n = len(y)
    q = sample_rate(n, batch_size)
    if epochs == 0 or n == 0:
        return {"loss": float("nan"), "steps": 0, "sample_rate": q}
    sampler_gen, noise_gen = generators
    # copies: the shared datasets are read-only arrays, and torch warns on a tensor over one
    dataset = TensorDataset(torch.from_numpy(np.array(x, np.float32)), torch.from_numpy(np.array(y, np.int64)))
    loader = DPDataLoader.from_data_loader(DataLoader(dataset, batch_size=batch_size), generator=sampler_gen)
    model.to(device)
    with warnings.catch_warnings():
        # Opacus warns that its default RNG is not a CSPRNG (we pass our own generators) and torch that
        # a backward hook fires for inputs that need no gradient (the images): both are expected here.
        warnings.filterwarnings("ignore", message=".*[Ss]ecure.*")
        warnings.filterwarnings("ignore", message=".*[Ff]ull backward hook.*")
        return _dp_loop(model, loader, n, q, clip=clip, noise_multiplier=noise_multiplier, epochs=epochs,
                        batch_size=batch_size, lr=lr, device=device, noise_gen=noise_gen,
                        sampler_gen=sampler_gen, optimizer=optimizer, public=public)


def _dp_loop(model, loader, n, q, *, clip, noise_multiplier, epochs, batch_size, lr, device, noise_gen,
             sampler_gen, optimizer, public) -> dict:
    from opacus import GradSampleModule
    from opacus.optimizers import DPOptimizer

    from fedkd.optimizers import torch_optimizer
    from fedkd.training import _mode

    gsm = GradSampleModule(model)
    private_opt = DPOptimizer(torch_optimizer(optimizer, model.parameters(), lr),
                              noise_multiplier=noise_multiplier, max_grad_norm=clip,
                              expected_batch_size=max(1, round(n * q)), generator=noise_gen)
    # The public step's weight scales its learning rate, not its loss: Adam is invariant to a loss scale, so
    # a weighted loss under its own Adam would take full-size public steps whatever distill_weight says.
    public_opt = torch_optimizer(optimizer, model.parameters(), lr * float(public[3])) if public else None
    if public is not None:
        px = torch.as_tensor(np.asarray(public[0], np.float32)).to(device)
        pt = torch.as_tensor(np.asarray(public[1], np.float32)).to(device)
        temperature = float(public[2])
        public_order, cursor = torch.randperm(len(px), generator=sampler_gen), 0
    steps, total, seen = 0, 0.0, 0
    try:
        with _mode(model, training=True):
            for _ in range(epochs):
                total, seen = 0.0, 0
                for xb, yb in loader:
                    xb, yb = xb.to(device), yb.to(device)
                    private_opt.zero_grad(set_to_none=True)
                    # sum / batch = the mean, and 0 (not NaN) for an empty Poisson batch, which still gets its noise
                    loss = F.cross_entropy(gsm(xb), yb, reduction="sum") / max(1, len(yb))
                    loss.backward()
                    private_opt.step()  # clip each example's gradient, add Gaussian noise to the sum
                    total += float(loss.detach()) * len(yb)
                    seen += len(yb)
                    steps += 1
                    if public_opt is not None:
                        private_opt.zero_grad(set_to_none=True)
                        if cursor + batch_size > len(px):
                            public_order, cursor = torch.randperm(len(px), generator=sampler_gen), 0
                        pidx = public_order[cursor: cursor + batch_size].to(device)
                        cursor += batch_size
                        gsm.disable_hooks()  # public data: no per-sample gradients, no clipping, no noise
                        public_opt.zero_grad(set_to_none=True)
                        _kd_loss(model(px[pidx]), pt[pidx], temperature).backward()
                        public_opt.step()
                        public_opt.zero_grad(set_to_none=True)
                        gsm.enable_hooks()
    finally:
        private_opt.zero_grad(set_to_none=True)
        gsm._close()  # remove Opacus' hooks and attributes: the plain model is left as it was given
    return {"loss": total / seen if seen else float("nan"), "steps": steps, "sample_rate": q}
