"""T-ACGAN: a conditional GAN whose class knowledge comes from a target's top-1 labels.

This is the knowledge-transfer stage of LOKT (Nguyen et al., "Label-Only Model
Inversion Attacks via Knowledge Transfer", NeurIPS 2023). The attacker has public,
unlabelled images and hard-label access to the target (a :class:`LabelOracle`):

- the discriminator has two heads on a shared trunk: real/fake, and a class head;
- the class head learns the target's labels of *generated* images, once a warm-up of
  plain (unconditional) GAN training has made those images worth labelling;
- the generator is conditional (a class embedding next to the latent) and is trained
  to fool the real/fake head and to be classified as its conditioning class by the
  class head. Through the class head, the target's decision regions shape what the
  generator draws for every class.

One addition to the paper, on by default (``label_public=True``): the public images
are labelled by the target too (each counts as a query), and the class head also
learns from them. This gives the class head real images to learn from from the first
step; with ``label_public=False`` the training follows the paper, where public data
stays unlabelled.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from ._common import as_device, check_images, check_positive_int, progress_bar, seeded_torch
from .label_oracle import LabelOracle

__all__ = [
    "ConditionalGenerator",
    "AuxiliaryDiscriminator",
    "DiscriminatorClassifier",
    "train_tacgan",
    "generate",
]


def _group_norm(channels: int) -> nn.GroupNorm:
    """Group norm with up to 8 groups: independent of the batch, unlike batch norm."""
    return nn.GroupNorm(math.gcd(8, channels), channels)


def _check_hidden(hidden) -> None:
    if isinstance(hidden, bool) or not isinstance(hidden, (int, np.integer)) or hidden < 8:
        raise ValueError(f"hidden must be an integer >= 8, got {hidden!r}")


def _pick_arch(arch: str, image_shape: tuple[int, int, int]) -> str:
    """Resolve "auto": a convolutional GAN for images of 16x16 and up, else an MLP."""
    _, h, w = image_shape
    conv_ok = h % 4 == 0 and w % 4 == 0
    if arch == "auto":
        return "conv" if conv_ok and h * w >= 256 else "mlp"
    if arch == "conv" and not conv_ok:
        raise ValueError(f"arch='conv' needs height and width divisible by 4, got {image_shape}")
    if arch not in ("mlp", "conv"):
        raise ValueError(f"arch must be 'auto', 'mlp' or 'conv', got {arch!r}")
    return arch


class ConditionalGenerator(nn.Module):
    """Maps a latent z (B, z_dim) and a class label (B,) to an image (B, C, H, W) in [0, 1].

    The label enters through a learned embedding concatenated to z. The network has
    no batch normalisation, so one image does not depend on the rest of its batch:
    an inversion that optimises a few latents sees the same generator that training
    saw.

    Parameters
    ----------
    image_shape : tuple (C, H, W)
    num_classes : int
    z_dim : int
        Latent size.
    hidden : int
        Width of the MLP layers, or the channel count of the conv generator.
    arch : {"auto", "mlp", "conv"}
        "conv" upsamples a (H/4, W/4) feature map twice; "auto" picks "conv" for
        images of 16x16 and larger.
    """

    def __init__(self, image_shape, num_classes: int, *, z_dim: int = 32, hidden: int = 128,
                 arch: str = "auto"):
        super().__init__()
        _check_hidden(hidden)
        self.image_shape = tuple(int(s) for s in image_shape)
        self.num_classes = int(num_classes)
        self.z_dim = int(z_dim)
        self.arch = _pick_arch(arch, self.image_shape)
        c, h, w = self.image_shape
        self.embed = nn.Embedding(self.num_classes, self.z_dim)
        if self.arch == "mlp":
            self.body = nn.Sequential(
                nn.Linear(2 * self.z_dim, hidden), nn.LeakyReLU(0.2),
                nn.Linear(hidden, hidden), nn.LeakyReLU(0.2),
                nn.Linear(hidden, c * h * w),
            )
        else:
            ch = hidden // 2
            self.body = nn.Sequential(
                nn.Linear(2 * self.z_dim, 2 * ch * (h // 4) * (w // 4)),
                nn.Unflatten(1, (2 * ch, h // 4, w // 4)),
                _group_norm(2 * ch), nn.ReLU(),
                nn.Upsample(scale_factor=2), nn.Conv2d(2 * ch, ch, 3, padding=1),
                _group_norm(ch), nn.ReLU(),
                nn.Upsample(scale_factor=2), nn.Conv2d(ch, ch // 2, 3, padding=1),
                _group_norm(ch // 2), nn.ReLU(),
                nn.Conv2d(ch // 2, c, 3, padding=1),
            )

    def forward(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        h = torch.cat([z, self.embed(labels)], dim=1)
        return torch.sigmoid(self.body(h)).view(-1, *self.image_shape)


class AuxiliaryDiscriminator(nn.Module):
    """Discriminator with a real/fake head and a class head on a shared trunk.

    The trunk and the real/fake head are spectrally normalised (stable GAN training);
    the class head is a plain linear layer.

    ``forward(x)`` returns ``(realness (B,), class_logits (B, num_classes))``.

    Parameters
    ----------
    image_shape : tuple (C, H, W)
    num_classes : int
    hidden : int
        Width of the MLP trunk, or the channel scale of the conv trunk.
    arch : {"auto", "mlp", "conv"}
    """

    def __init__(self, image_shape, num_classes: int, *, hidden: int = 128, arch: str = "auto"):
        super().__init__()
        _check_hidden(hidden)
        self.image_shape = tuple(int(s) for s in image_shape)
        self.arch = _pick_arch(arch, self.image_shape)
        c, h, w = self.image_shape
        if self.arch == "mlp":
            self.trunk = nn.Sequential(
                nn.Flatten(),
                spectral_norm(nn.Linear(c * h * w, hidden)), nn.LeakyReLU(0.2),
                spectral_norm(nn.Linear(hidden, hidden)), nn.LeakyReLU(0.2),
            )
            features = hidden
        else:
            ch = hidden // 4
            self.trunk = nn.Sequential(
                spectral_norm(nn.Conv2d(c, ch, 3, padding=1)), nn.LeakyReLU(0.2),
                spectral_norm(nn.Conv2d(ch, 2 * ch, 4, stride=2, padding=1)), nn.LeakyReLU(0.2),
                spectral_norm(nn.Conv2d(2 * ch, 4 * ch, 4, stride=2, padding=1)), nn.LeakyReLU(0.2),
                nn.Flatten(),
            )
            features = 4 * ch * (h // 4) * (w // 4)
        self.realness = spectral_norm(nn.Linear(features + 1, 1))
        self.classes = nn.Linear(features, int(num_classes))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f = self.trunk(x)
        # Minibatch standard deviation (Karras et al., 2018): the real/fake head sees how
        # varied the batch is, so a generator that draws one image per class is caught.
        # Only the real/fake head gets it; the class head stays a per-image classifier.
        spread = f.std(dim=0, unbiased=False).mean() if len(f) > 1 else f.new_zeros(())
        realness = self.realness(torch.cat([f, spread.expand(len(f), 1)], dim=1))
        return realness.squeeze(1), self.classes(f)

    def classifier(self) -> "DiscriminatorClassifier":
        """The class head as a stand-alone classifier (shares this module's weights)."""
        return DiscriminatorClassifier(self)


class DiscriminatorClassifier(nn.Module):
    """View of an :class:`AuxiliaryDiscriminator` that returns only class logits.

    LOKT uses the T-ACGAN's class head as one of its surrogate models.
    """

    def __init__(self, discriminator: AuxiliaryDiscriminator):
        super().__init__()
        self.discriminator = discriminator

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.discriminator(x)[1]


def train_tacgan(
    oracle: LabelOracle,
    public_x,
    num_classes: int,
    *,
    steps: int = 1500,
    batch_size: int = 64,
    z_dim: int = 32,
    warmup: int | None = None,
    n_dis: int = 1,
    lr: float = 1e-3,
    class_weight: float = 1.0,
    diversity_weight: float = 0.1,
    label_public: bool = True,
    public_labels=None,
    hidden: int = 128,
    arch: str = "auto",
    seed: int = 0,
    device="cpu",
    progress: bool = False,
) -> tuple[ConditionalGenerator, AuxiliaryDiscriminator]:
    """Train a T-ACGAN on public images with the target's top-1 labels.

    Per step: ``n_dis`` discriminator updates, then one generator update.

    - Discriminator: hinge loss on real public vs generated images; after
      ``warmup`` steps, cross-entropy of the class head on fresh generated images
      against the oracle's labels of them (``batch_size`` queries per update); with
      ``label_public``, cross-entropy on the real batch against the oracle's labels of
      the public images (queried once, ``len(public_x)`` queries).
    - Generator: fool the real/fake head, and (once the class head is being taught:
      from step 0 with ``label_public``, else after ``warmup``) make the class head
      predict the conditioning class.

    Query cost: ``len(public_x) * label_public + (steps - warmup) * n_dis * batch_size``.

    Parameters
    ----------
    oracle : LabelOracle
        Hard-label access to the target; counts queries.
    public_x : ndarray of shape (N, C, H, W), float32 in [0, 1]
        The attacker's unlabelled public images (e.g. the transfer set).
    num_classes : int
        Size of the target's label space.
    steps : int
        Generator updates.
    batch_size : int
        Images per update (real and generated).
    z_dim : int
        Latent size.
    warmup : int or None
        Steps of plain GAN training before generated images are sent to the oracle;
        default ``steps // 5``.
    n_dis : int
        Discriminator updates per generator update.
    lr : float
        Adam learning rate of both networks (betas 0.5, 0.999).
    class_weight : float
        Weight of the class losses relative to the adversarial ones (LOKT's alpha).
    diversity_weight : float
        Weight of a mode-seeking term (Mao et al., 2019) in the generator loss:
        1 / (mean |G(z1, y) - G(z2, y)| / mean |z1 - z2|). Small GANs on small public
        sets otherwise tend to ignore z and draw one image per class, which makes
        every inversion of a class return the same picture. 0 disables it.
    label_public : bool
        Also teach the class head the oracle's labels of the public images.
    public_labels : ndarray of shape (N,), int64, optional
        The oracle's labels of ``public_x`` if the caller already bought them (no
        new queries are spent then); queried when None and ``label_public``.
    hidden : int
        Network width (see :class:`ConditionalGenerator`).
    arch : {"auto", "mlp", "conv"}
    seed : int
        Seeds the initialisation, the latents, the labels and the batches.
    device : str or torch.device
    progress : bool
        Show a tqdm bar.

    Returns
    -------
    generator : ConditionalGenerator
        In eval mode, on ``device``.
    discriminator : AuxiliaryDiscriminator
        In eval mode, on ``device``; ``discriminator.classifier()`` is a surrogate.
    """
    x = check_images(public_x, "public_x")
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or num_classes < 2:
        raise ValueError(f"num_classes must be an integer >= 2, got {num_classes!r}")
    steps = check_positive_int(steps, "steps")
    batch_size = check_positive_int(batch_size, "batch_size")
    z_dim = check_positive_int(z_dim, "z_dim")
    n_dis = check_positive_int(n_dis, "n_dis")
    warmup = steps // 5 if warmup is None else warmup
    if isinstance(warmup, bool) or not isinstance(warmup, (int, np.integer)) or not 0 <= warmup <= steps:
        raise ValueError(f"warmup must be an integer in [0, steps={steps}], got {warmup!r}")
    if not lr > 0:
        raise ValueError(f"lr must be positive, got {lr!r}")
    if not class_weight >= 0:
        raise ValueError(f"class_weight must be >= 0, got {class_weight!r}")
    if not diversity_weight >= 0:
        raise ValueError(f"diversity_weight must be >= 0, got {diversity_weight!r}")

    dev = as_device(device)
    shape = tuple(x.shape[1:])
    with seeded_torch(seed, dev):
        gen = ConditionalGenerator(shape, num_classes, z_dim=z_dim, hidden=hidden, arch=arch).to(dev)
        dis = AuxiliaryDiscriminator(shape, num_classes, hidden=hidden, arch=arch).to(dev)
    # A CPU generator drives every draw, so a seed gives the same stream on any device.
    rng = torch.Generator().manual_seed(int(seed))
    public = torch.from_numpy(np.ascontiguousarray(x)).to(dev)
    if not label_public:
        public_labels = None
    elif public_labels is None:
        public_labels = oracle(public)
    else:
        labels = np.asarray(public_labels)
        if labels.shape != (len(x),) or not np.issubdtype(labels.dtype, np.integer) \
                or labels.min() < 0 or labels.max() >= num_classes:
            raise ValueError(
                f"public_labels must be {len(x)} integer labels in range({num_classes}), "
                f"got shape {labels.shape} and dtype {labels.dtype}"
            )
        public_labels = torch.from_numpy(labels.astype(np.int64)).to(dev)
    opt_g = torch.optim.Adam(gen.parameters(), lr=lr, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(dis.parameters(), lr=lr, betas=(0.5, 0.999))

    def sample(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        z = torch.randn(n, z_dim, generator=rng).to(dev)
        y = torch.randint(int(num_classes), (n,), generator=rng).to(dev)
        return z, y

    gen.train()
    dis.train()
    for step in progress_bar(range(steps), enabled=progress, desc="T-ACGAN", total=steps):
        query_fakes = step >= warmup
        for _ in range(n_dis):
            idx = torch.randint(len(x), (batch_size,), generator=rng).to(dev)
            real = public[idx]
            z, y = sample(batch_size)
            with torch.no_grad():
                fake = gen(z, y)
            real_score, real_cls = dis(real)
            fake_score, fake_cls = dis(fake)
            loss_d = F.relu(1 - real_score).mean() + F.relu(1 + fake_score).mean()
            if label_public:
                loss_d = loss_d + class_weight * F.cross_entropy(real_cls, public_labels[idx])
            if query_fakes:
                # The heart of T-ACGAN: the class head learns the *target's* view of
                # generated images, not the label the generator was asked for.
                loss_d = loss_d + class_weight * F.cross_entropy(fake_cls, oracle(fake))
            opt_d.zero_grad(set_to_none=True)
            loss_d.backward()
            opt_d.step()

        # Two latents per label: the second half of the batch repeats the first
        # half's labels, which the mode-seeking term compares.
        half = max(1, batch_size // 2)
        z, y = sample(half)
        z = torch.cat([z, torch.randn(half, z_dim, generator=rng).to(dev)])
        y = torch.cat([y, y])
        fake = gen(z, y)
        fake_score, fake_cls = dis(fake)
        loss_g = -fake_score.mean()
        if label_public or query_fakes:
            loss_g = loss_g + class_weight * F.cross_entropy(fake_cls, y)
        if diversity_weight > 0:
            image_gap = (fake[:half] - fake[half:]).abs().mean()
            latent_gap = (z[:half] - z[half:]).abs().mean()
            loss_g = loss_g + diversity_weight / (image_gap / latent_gap + 1e-5)
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()
    return gen.eval(), dis.eval()


def generate(
    generator: ConditionalGenerator,
    labels,
    *,
    seed: int = 0,
    batch_size: int = 512,
    device=None,
) -> np.ndarray:
    """Images from random latents, conditioned on the given labels.

    Parameters
    ----------
    generator : ConditionalGenerator
    labels : array-like of int, shape (N,)
        Conditioning class of each image.
    seed : int
        Seeds the latents.
    batch_size : int
        Images per forward pass.
    device : str, torch.device or None
        Defaults to the generator's device.

    Returns
    -------
    images : ndarray of shape (N, C, H, W), float32 in [0, 1]
    """
    labels = np.asarray(labels, dtype=np.int64).ravel()
    if labels.size and (labels.min() < 0 or labels.max() >= generator.num_classes):
        raise ValueError(f"labels must lie in range(num_classes={generator.num_classes})")
    dev = as_device(device) if device is not None else next(generator.parameters()).device
    rng = torch.Generator().manual_seed(int(seed))
    z = torch.randn(len(labels), generator.z_dim, generator=rng)
    y = torch.from_numpy(labels)
    out = []
    generator.eval()
    with torch.no_grad():
        for start in range(0, len(labels), batch_size):
            zb, yb = z[start:start + batch_size].to(dev), y[start:start + batch_size].to(dev)
            out.append(generator(zb, yb).cpu().numpy())
    if not out:
        return np.zeros((0, *generator.image_shape), dtype=np.float32)
    return np.concatenate(out).astype(np.float32)

