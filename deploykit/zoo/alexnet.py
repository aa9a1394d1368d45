"""AlexNet (Krizhevsky et al. 2012) and ZFNet (Zeiler & Fergus 2013).

Both are five convolutions, three max pools and three FC layers; ``AlexNet`` is the one
class, and a variant is its table of convolution rows plus pool placement.

``alexnet`` is the lecture's table and torchvision's layout: 64-192-384-256-256 filters
(the single-GPU "one weird trick" widths; the 2012 paper split 96-256-384-384-256 over two
GPUs), no local response normalization. With a 227×227 input conv1 gives 64×56×56 and pool5
256×6×6; at 224×224 conv1 gives 55×55 and pool5 is 6×6 as well. The 6×6 adaptive pool
keeps the classifier at 9216 inputs either way. Attribute names follow torchvision
(``features``, ``avgpool``, ``classifier``), so a torchvision state dict loads unchanged.

``zfnet`` is the ZFNet paper's Figure 3: 7×7 stride-2 conv1 (instead of 11×11 stride 4) and
the paper's widths 96-256-384-384-256 on 224×224 input (conv1 110×110, pool1 55×55, conv2
26×26, pool2 13×13, pool5 6×6). Its contrast normalization layers are left out, as
torchvision does for AlexNet; there are no published torchvision weights for it.
"""

from __future__ import annotations

from typing import NamedTuple

from torch import Tensor, nn

from deploykit.zoo._registry import Preprocessing, register_model

_ALEXNET_PAPER = (
    "ImageNet Classification with Deep Convolutional Neural Networks (Krizhevsky et al.)"
)
_ZFNET_PAPER = "Visualizing and Understanding Convolutional Networks (Zeiler, Fergus)"


class ConvRow(NamedTuple):
    """One convolution of the table; ``pool`` says a 3×3 stride-2 max pool follows it."""

    filters: int
    kernel: int
    stride: int
    padding: int
    pool: bool
    pool_padding: int = 0


ALEXNET_ROWS: tuple[ConvRow, ...] = (
    ConvRow(64, 11, 4, 2, pool=True),  # conv1 -> 64 x 56 x 56 at 227 (55 at 224)
    ConvRow(192, 5, 1, 2, pool=True),  # conv2 -> 192 x 27 x 27
    ConvRow(384, 3, 1, 1, pool=False),  # conv3 -> 384 x 13 x 13
    ConvRow(256, 3, 1, 1, pool=False),  # conv4 -> 256 x 13 x 13
    ConvRow(256, 3, 1, 1, pool=True),  # conv5 -> 256 x 13 x 13, pool5 -> 6 x 6
)

ZFNET_ROWS: tuple[ConvRow, ...] = (
    # The pools after conv1/conv2 pad by 1 so the paper's 110 -> 55 and 26 -> 13 hold.
    ConvRow(96, 7, 2, 1, pool=True, pool_padding=1),  # conv1 -> 96 x 110 x 110, pool -> 55
    ConvRow(256, 5, 2, 0, pool=True, pool_padding=1),  # conv2 -> 256 x 26 x 26, pool -> 13
    ConvRow(384, 3, 1, 1, pool=False),  # conv3 -> 384 x 13 x 13
    ConvRow(384, 3, 1, 1, pool=False),  # conv4 -> 384 x 13 x 13
    ConvRow(256, 3, 1, 1, pool=True),  # conv5 -> 256 x 13 x 13, pool5 -> 6 x 6
)


def make_features(rows: tuple[ConvRow, ...]) -> nn.Sequential:
    """Conv + ReLU per row, then a 3×3 stride-2 max pool where the row says so."""
    layers: list[nn.Module] = []
    in_channels = 3
    for row in rows:
        layers.append(
            nn.Conv2d(in_channels, row.filters, row.kernel, stride=row.stride, padding=row.padding)
        )
        layers.append(nn.ReLU(inplace=True))
        if row.pool:
            layers.append(nn.MaxPool2d(kernel_size=3, stride=2, padding=row.pool_padding))
        in_channels = row.filters
    return nn.Sequential(*layers)


class AlexNet(nn.Module):
    """``features`` (the conv table), 6×6 adaptive avg pool, FC 4096-4096-classes with dropout.

    Inputs smaller than about 63×63 (AlexNet) shrink below 1×1 before pool5 and fail.
    """

    def __init__(
        self,
        num_classes: int = 1000,
        dropout: float = 0.5,
        rows: tuple[ConvRow, ...] = ALEXNET_ROWS,
    ) -> None:
        super().__init__()
        self.features = make_features(rows)
        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
        self.flatten = nn.Flatten(1)
        last = rows[-1].filters
        self.classifier = nn.Sequential(
            nn.Dropout(p=dropout),
            nn.Linear(last * 6 * 6, 4096),
            nn.ReLU(inplace=True),
            nn.Dropout(p=dropout),
            nn.Linear(4096, 4096),
            nn.ReLU(inplace=True),
            nn.Linear(4096, num_classes),
        )

    def forward(self, x: Tensor) -> Tensor:
        x = self.features(x)
        x = self.flatten(self.avgpool(x))
        return self.classifier(x)


@register_model(
    family="alexnet",
    year=2012,
    paper=_ALEXNET_PAPER,
    input_size=227,
    preprocessing=Preprocessing(resize=256, crop=227),
    torchvision_name="alexnet",
    top1=56.522,
    global_pool=False,
)
def alexnet(num_classes: int = 1000, **cfg) -> AlexNet:
    return AlexNet(num_classes=num_classes, **cfg)


@register_model(
    family="zfnet",
    year=2013,
    paper=_ZFNET_PAPER,
    input_size=224,
    global_pool=False,
)
def zfnet(num_classes: int = 1000, **cfg) -> AlexNet:
    return AlexNet(num_classes=num_classes, rows=ZFNET_ROWS, **cfg)


__all__ = ["ALEXNET_ROWS", "ZFNET_ROWS", "AlexNet", "ConvRow", "alexnet", "zfnet"]
