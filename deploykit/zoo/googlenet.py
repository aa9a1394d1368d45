"""GoogLeNet / Inception v1 (Szegedy et al. 2014): a stem, nine Inception modules, GAP, one FC.

Contract:
- ``GoogLeNet(aux_logits=False)`` (the default) has no auxiliary classifiers at all: the
  deployed graph is the paper's main path only.
- ``aux_logits=True`` builds ``aux1`` (after inception4a) and ``aux2`` (after inception4d).
  They run only in training mode, where ``forward`` returns
  ``GoogLeNetOutputs(logits, aux_logits2, aux_logits1)`` (torchvision's order).
- In eval mode ``forward`` always returns one tensor of logits, with or without aux heads.

Where torchvision deviates from the paper, and what we do: torchvision adds BatchNorm
(eps=1e-3) after every convolution (``BasicConv2d``; the paper predates BatchNorm) and uses
a 3×3 convolution in the branch the paper gives a 5×5 (pytorch/vision#906). We follow
torchvision in both, so its ImageNet weights load unchanged and mean what they were trained
to mean; the MACs and parameters are therefore torchvision's, not the paper's table.
``transform_input`` (off by default, as torchvision without weights) re-normalizes
ImageNet-normalized input to the [-1, 1] scaling the original Google weights expect; set it
to True when you load torchvision's ``IMAGENET1K_V1`` weights, as torchvision does.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn

from deploykit.zoo._registry import register_model

_PAPER = "Going Deeper with Convolutions (Szegedy et al.)"


class GoogLeNetOutputs(NamedTuple):
    """Training-mode output when the auxiliary classifiers exist."""

    logits: Tensor
    aux_logits2: Tensor
    aux_logits1: Tensor


class BasicConv2d(nn.Module):
    """Conv (no bias), BatchNorm (eps=1e-3), ReLU: torchvision's unit, names ``conv``/``bn``."""

    def __init__(self, in_channels: int, out_channels: int, **kwargs) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, bias=False, **kwargs)
        self.bn = nn.BatchNorm2d(out_channels, eps=0.001)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.relu(self.bn(self.conv(x)))


class Inception(nn.Module):
    """Four parallel branches concatenated on channels: 1×1 | 1×1→3×3 | 1×1→3×3 | pool→1×1.

    Arguments are the columns of the paper's Table 1 (#1×1, #3×3 reduce, #3×3, #5×5 reduce,
    #5×5, pool proj); the "5×5" branch uses a 3×3 kernel, as torchvision.
    """

    def __init__(
        self,
        in_channels: int,
        ch1x1: int,
        ch3x3red: int,
        ch3x3: int,
        ch5x5red: int,
        ch5x5: int,
        pool_proj: int,
    ) -> None:
        super().__init__()
        self.branch1 = BasicConv2d(in_channels, ch1x1, kernel_size=1)
        self.branch2 = nn.Sequential(
            BasicConv2d(in_channels, ch3x3red, kernel_size=1),
            BasicConv2d(ch3x3red, ch3x3, kernel_size=3, padding=1),
        )
        self.branch3 = nn.Sequential(
            BasicConv2d(in_channels, ch5x5red, kernel_size=1),
            # 3×3, not the paper's 5×5: torchvision's weights were trained this way.
            BasicConv2d(ch5x5red, ch5x5, kernel_size=3, padding=1),
        )
        self.branch4 = nn.Sequential(
            nn.MaxPool2d(kernel_size=3, stride=1, padding=1, ceil_mode=True),
            BasicConv2d(in_channels, pool_proj, kernel_size=1),
        )
        self.out_channels = ch1x1 + ch3x3 + ch5x5 + pool_proj

    def forward(self, x: Tensor) -> Tensor:
        branches = [self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)]
        return torch.cat(branches, 1)


class InceptionAux(nn.Module):
    """Auxiliary classifier (training only): 4×4 avg pool, 1×1 conv to 128, FC 1024, FC."""

    def __init__(self, in_channels: int, num_classes: int, dropout: float = 0.7) -> None:
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d((4, 4))
        self.conv = BasicConv2d(in_channels, 128, kernel_size=1)
        self.flatten = nn.Flatten(1)
        self.fc1 = nn.Linear(2048, 1024)
        self.relu = nn.ReLU(inplace=True)
        self.dropout = nn.Dropout(p=dropout)
        self.fc2 = nn.Linear(1024, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        # aux1: N x 512 x 14 x 14, aux2: N x 528 x 14 x 14 -> N x 128 x 4 x 4
        x = self.conv(self.avgpool(x))
        x = self.relu(self.fc1(self.flatten(x)))
        return self.fc2(self.dropout(x))


class GoogLeNet(nn.Module):
    """Inception v1; see the module docstring for the output contract and torchvision notes."""

    def __init__(
        self,
        num_classes: int = 1000,
        aux_logits: bool = False,
        transform_input: bool = False,
        init_weights: bool = True,
        dropout: float = 0.2,
        dropout_aux: float = 0.7,
    ) -> None:
        super().__init__()
        self.aux_logits = aux_logits
        self.transform_input = transform_input

        self.conv1 = BasicConv2d(3, 64, kernel_size=7, stride=2, padding=3)
        self.maxpool1 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.conv2 = BasicConv2d(64, 64, kernel_size=1)
        self.conv3 = BasicConv2d(64, 192, kernel_size=3, padding=1)
        self.maxpool2 = nn.MaxPool2d(3, stride=2, ceil_mode=True)

        self.inception3a = Inception(192, 64, 96, 128, 16, 32, 32)
        self.inception3b = Inception(256, 128, 128, 192, 32, 96, 64)
        self.maxpool3 = nn.MaxPool2d(3, stride=2, ceil_mode=True)

        self.inception4a = Inception(480, 192, 96, 208, 16, 48, 64)
        self.inception4b = Inception(512, 160, 112, 224, 24, 64, 64)
        self.inception4c = Inception(512, 128, 128, 256, 24, 64, 64)
        self.inception4d = Inception(512, 112, 144, 288, 32, 64, 64)
        self.inception4e = Inception(528, 256, 160, 320, 32, 128, 128)
        self.maxpool4 = nn.MaxPool2d(2, stride=2, ceil_mode=True)

        self.inception5a = Inception(832, 256, 160, 320, 32, 128, 128)
        self.inception5b = Inception(832, 384, 192, 384, 48, 128, 128)

        # Built only when asked: the deployed graph carries no training-only heads.
        self.aux1: InceptionAux | None = None
        self.aux2: InceptionAux | None = None
        if aux_logits:
            self.aux1 = InceptionAux(512, num_classes, dropout=dropout_aux)
            self.aux2 = InceptionAux(528, num_classes, dropout=dropout_aux)

        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.flatten = nn.Flatten(1)
        self.dropout = nn.Dropout(p=dropout)
        self.fc = nn.Linear(1024, num_classes)

        if init_weights:
            for m in self.modules():
                if isinstance(m, (nn.Conv2d, nn.Linear)):
                    nn.init.trunc_normal_(m.weight, mean=0.0, std=0.01, a=-2, b=2)
                elif isinstance(m, nn.BatchNorm2d):
                    nn.init.constant_(m.weight, 1)
                    nn.init.constant_(m.bias, 0)

    def _transform_input(self, x: Tensor) -> Tensor:
        # ImageNet mean/std normalization -> (x - 0.5) / 0.5, per channel.
        x_ch0 = torch.unsqueeze(x[:, 0], 1) * (0.229 / 0.5) + (0.485 - 0.5) / 0.5
        x_ch1 = torch.unsqueeze(x[:, 1], 1) * (0.224 / 0.5) + (0.456 - 0.5) / 0.5
        x_ch2 = torch.unsqueeze(x[:, 2], 1) * (0.225 / 0.5) + (0.406 - 0.5) / 0.5
        return torch.cat((x_ch0, x_ch1, x_ch2), 1)

    def forward(self, x: Tensor) -> Tensor | GoogLeNetOutputs:
        if self.transform_input:
            x = self._transform_input(x)
        # N x 3 x 224 x 224
        x = self.maxpool1(self.conv1(x))
        # N x 64 x 56 x 56
        x = self.conv3(self.conv2(x))
        # N x 192 x 56 x 56
        x = self.maxpool2(x)
        # N x 192 x 28 x 28
        x = self.inception3a(x)
        # N x 256 x 28 x 28
        x = self.inception3b(x)
        # N x 480 x 28 x 28
        x = self.maxpool3(x)
        # N x 480 x 14 x 14
        x = self.inception4a(x)
        # N x 512 x 14 x 14
        run_aux = self.training and self.aux1 is not None and self.aux2 is not None
        aux1 = self.aux1(x) if run_aux else None
        x = self.inception4b(x)
        x = self.inception4c(x)
        x = self.inception4d(x)
        # N x 528 x 14 x 14
        aux2 = self.aux2(x) if run_aux else None
        x = self.inception4e(x)
        # N x 832 x 14 x 14
        x = self.maxpool4(x)
        # N x 832 x 7 x 7
        x = self.inception5a(x)
        x = self.inception5b(x)
        # N x 1024 x 7 x 7
        x = self.flatten(self.avgpool(x))
        x = self.fc(self.dropout(x))
        # N x num_classes
        if aux1 is not None and aux2 is not None:
            return GoogLeNetOutputs(x, aux2, aux1)
        return x


@register_model(
    family="googlenet",
    year=2014,
    paper=_PAPER,
    torchvision_name="googlenet",
    top1=69.778,
)
def googlenet(num_classes: int = 1000, **cfg) -> GoogLeNet:
    return GoogLeNet(num_classes=num_classes, **cfg)


__all__ = ["BasicConv2d", "GoogLeNet", "GoogLeNetOutputs", "Inception", "InceptionAux", "googlenet"]
