"""Network definitions for the model zoo.

Every network takes images shaped (B, C, H, W) and returns logits shaped (B, num_classes). The same class
serves 8x8 digits, 28x28 grey images and 32x32 colour images: each network plans its downsampling from the
input size, halving the spatial size only while the result stays at least ``MIN_SPATIAL`` pixels wide, so
small inputs keep a usable feature map instead of being pooled away.

No network uses dropout, so a forward pass in training mode draws no random numbers; only weight
initialisation is random (see ``fedkd.models.zoo.build_model`` for seeding it).
"""

from __future__ import annotations

import math

import torch
from torch import nn

# Downsampling stops before the feature map would get narrower than this (8x8 digits stop at 4x4).
MIN_SPATIAL = 4


def _halved(size: int) -> int:
    """Spatial size after a stride-2 step that rounds up (ceil-mode pooling, or a padded 3x3 conv)."""
    return math.ceil(size / 2)


def _can_halve(height: int, width: int) -> bool:
    """Whether one more stride-2 step keeps both sides at least ``MIN_SPATIAL`` wide."""
    return min(_halved(height), _halved(width)) >= MIN_SPATIAL


class MLP(nn.Module):
    """Two hidden layers on the flattened image.

    Parameters
    ----------
    input_shape : tuple of int
        (C, H, W) of one image.
    num_classes : int
        Width of the output logits.
    hidden : tuple of int
        Widths of the hidden layers.
    """

    def __init__(self, input_shape: tuple[int, int, int], num_classes: int, hidden: tuple[int, ...] = (256, 128)):
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        width = math.prod(input_shape)
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU(inplace=True)]
            width = h
        layers.append(nn.Linear(width, num_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class PlainCNN(nn.Module):
    """A stack of 3x3 conv stages, each followed by 2x2 max-pooling while the image is large enough.

    The final feature map (its size is worked out here from ``input_shape``) is flattened and classified by
    a linear head, with one hidden layer when ``head_hidden`` is given. There is deliberately no adaptive
    pooling: its CUDA backward pass adds with atomics, so GPU runs would differ from run to run and
    ``torch.use_deterministic_algorithms(True)`` would refuse to train the model.

    Parameters
    ----------
    input_shape : tuple of int
        (C, H, W) of one image.
    num_classes : int
        Width of the output logits.
    channels : tuple of int
        Output channels of each conv stage.
    batch_norm : bool
        Put a BatchNorm2d after every conv (adds running-statistics buffers to the state dict).
    head_hidden : int or None
        Width of a hidden layer in the classifier head; None for a single linear layer.
    """

    def __init__(
        self,
        input_shape: tuple[int, int, int],
        num_classes: int,
        channels: tuple[int, ...],
        batch_norm: bool = False,
        head_hidden: int | None = None,
    ):
        super().__init__()
        in_ch, height, width = input_shape
        layers: list[nn.Module] = []
        for out_ch in channels:
            layers.append(nn.Conv2d(in_ch, out_ch, kernel_size=3, padding=1, bias=not batch_norm))
            if batch_norm:
                layers.append(nn.BatchNorm2d(out_ch))
            layers.append(nn.ReLU(inplace=True))
            if _can_halve(height, width):
                # ceil_mode keeps odd sizes from losing their last row (7x7 -> 4x4, not 3x3).
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2, ceil_mode=True))
                height, width = _halved(height), _halved(width)
            in_ch = out_ch
        self.features = nn.Sequential(*layers)
        flat = in_ch * height * width
        if head_hidden is None:
            self.head = nn.Sequential(nn.Flatten(), nn.Linear(flat, num_classes))
        else:
            self.head = nn.Sequential(
                nn.Flatten(),
                nn.Linear(flat, head_hidden),
                nn.ReLU(inplace=True),
                nn.Linear(head_hidden, num_classes),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class BasicBlock(nn.Module):
    """ResNet basic block: two 3x3 convs with batch norm and an identity (or 1x1 projection) shortcut."""

    def __init__(self, in_ch: int, out_ch: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, kernel_size=3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.relu = nn.ReLU(inplace=True)
        if stride != 1 or in_ch != out_ch:
            self.shortcut: nn.Module = nn.Sequential(
                nn.Conv2d(in_ch, out_ch, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(out_ch),
            )
        else:
            self.shortcut = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class SmallResNet(nn.Module):
    """A narrow ResNet: conv stem, one basic block per stage, global average pooling, linear head.

    The stem max-pools and every later stage uses stride 2 only while the image is large enough, so 28x28
    and 32x32 inputs end at 4x4 and 8x8 digits keep 4x4 after the stem. Features are averaged over the
    final map before the linear head.

    Parameters
    ----------
    input_shape : tuple of int
        (C, H, W) of one image.
    num_classes : int
        Width of the output logits.
    widths : tuple of int
        Channels of the stem/first stage and of each following stage.
    """

    def __init__(self, input_shape: tuple[int, int, int], num_classes: int, widths: tuple[int, ...] = (16, 32, 64)):
        super().__init__()
        in_ch, height, width = input_shape
        stem: list[nn.Module] = [
            nn.Conv2d(in_ch, widths[0], kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(inplace=True),
        ]
        if _can_halve(height, width):
            stem.append(nn.MaxPool2d(kernel_size=2, stride=2, ceil_mode=True))
            height, width = _halved(height), _halved(width)
        self.stem = nn.Sequential(*stem)
        blocks: list[nn.Module] = []
        prev = widths[0]
        for i, w in enumerate(widths):
            stride = 1
            if i > 0 and _can_halve(height, width):
                stride = 2
                height, width = _halved(height), _halved(width)
            blocks.append(BasicBlock(prev, w, stride))
            prev = w
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Linear(prev, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Global average pooling as a plain mean: unlike AdaptiveAvgPool2d its CUDA backward is deterministic.
        return self.head(self.blocks(self.stem(x)).mean(dim=(2, 3)))
