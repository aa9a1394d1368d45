"""ShuffleNet V2 (Ma et al. 2018): channel split, depthwise convolutions, channel shuffle.

A variant is a row of the paper's Table 5: repeats per stage (4, 8, 4) and the output
channels of conv1, stages 2-4 and conv5 for a width multiplier. Attribute names follow
torchvision (``conv1``, ``maxpool``, ``stage2..4``, ``conv5``, ``fc``; ``branch1``/``branch2``
inside blocks), so a torchvision state dict loads unchanged.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from deploykit.zoo._registry import register_model

_PAPER = "ShuffleNet V2: Practical Guidelines for Efficient CNN Architecture Design (Ma et al.)"

STAGES_REPEATS: tuple[int, int, int] = (4, 8, 4)

# Output channels of conv1, stage2, stage3, stage4, conv5 per width multiplier (Table 5).
STAGES_OUT_CHANNELS: dict[str, tuple[int, int, int, int, int]] = {
    "x0_5": (24, 48, 96, 192, 1024),
    "x1_0": (24, 116, 232, 464, 1024),
    "x1_5": (24, 176, 352, 704, 1024),
    "x2_0": (24, 244, 488, 976, 2048),
}


class ChannelShuffle(nn.Module):
    """Interleave channels across ``groups`` so the two branches exchange information."""

    def __init__(self, groups: int = 2) -> None:
        super().__init__()
        self.groups = groups

    def forward(self, x: Tensor) -> Tensor:
        n, c, h, w = x.size()
        x = x.view(n, self.groups, c // self.groups, h, w)
        x = torch.transpose(x, 1, 2).contiguous()
        return x.view(n, c, h, w)


def _depthwise(channels: int, stride: int) -> nn.Conv2d:
    return nn.Conv2d(channels, channels, 3, stride, 1, bias=False, groups=channels)


def _pointwise(in_channels: int, out_channels: int) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 1, 1, 0, bias=False)


class InvertedResidual(nn.Module):
    """The ShuffleNet V2 unit (paper Fig. 3c/d).

    Stride 1: split the channels in half, transform one half (1×1, 3×3 depthwise, 1×1), concat,
    shuffle. Stride 2: both branches see the whole input and each halves the resolution.
    """

    def __init__(self, inp: int, oup: int, stride: int) -> None:
        super().__init__()
        if not 1 <= stride <= 3:
            raise ValueError(f"illegal stride value {stride}")
        self.stride = stride
        branch_features = oup // 2
        if stride == 1 and inp != branch_features << 1:
            raise ValueError(f"stride 1 needs inp == oup, got inp={inp}, oup={oup}")
        if stride > 1:
            self.branch1 = nn.Sequential(
                _depthwise(inp, stride),
                nn.BatchNorm2d(inp),
                _pointwise(inp, branch_features),
                nn.BatchNorm2d(branch_features),
                nn.ReLU(inplace=True),
            )
        else:
            self.branch1 = nn.Sequential()
        self.branch2 = nn.Sequential(
            _pointwise(inp if stride > 1 else branch_features, branch_features),
            nn.BatchNorm2d(branch_features),
            nn.ReLU(inplace=True),
            _depthwise(branch_features, stride),
            nn.BatchNorm2d(branch_features),
            _pointwise(branch_features, branch_features),
            nn.BatchNorm2d(branch_features),
            nn.ReLU(inplace=True),
        )
        self.shuffle = ChannelShuffle(2)

    def forward(self, x: Tensor) -> Tensor:
        if self.stride == 1:
            x1, x2 = x.chunk(2, dim=1)
            out = torch.cat((x1, self.branch2(x2)), dim=1)
        else:
            out = torch.cat((self.branch1(x), self.branch2(x)), dim=1)
        return self.shuffle(out)


class ShuffleNetV2(nn.Module):
    """conv1 3×3/2, 3×3/2 max pool, stages 2-4 (first unit of each strides 2), 1×1 conv5, GAP, FC.

    Any ``num_classes`` and any input size work (the head is a global pool).
    """

    def __init__(
        self,
        stages_repeats: tuple[int, ...] = STAGES_REPEATS,
        stages_out_channels: tuple[int, ...] = STAGES_OUT_CHANNELS["x1_0"],
        num_classes: int = 1000,
    ) -> None:
        super().__init__()
        if len(stages_repeats) != 3:
            raise ValueError("expected stages_repeats as list of 3 positive ints")
        if len(stages_out_channels) != 5:
            raise ValueError("expected stages_out_channels as list of 5 positive ints")
        self._stage_out_channels = tuple(stages_out_channels)

        input_channels = 3
        output_channels = stages_out_channels[0]
        # N x 3 x 224 x 224 -> N x 24 x 112 x 112
        self.conv1 = nn.Sequential(
            nn.Conv2d(input_channels, output_channels, 3, 2, 1, bias=False),
            nn.BatchNorm2d(output_channels),
            nn.ReLU(inplace=True),
        )
        input_channels = output_channels
        # -> N x 24 x 56 x 56
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)

        self.stage2: nn.Sequential
        self.stage3: nn.Sequential
        self.stage4: nn.Sequential
        # stage2 -> 28 x 28, stage3 -> 14 x 14, stage4 -> 7 x 7
        for name, repeats, output_channels in zip(
            ("stage2", "stage3", "stage4"), stages_repeats, stages_out_channels[1:4], strict=True
        ):
            units = [InvertedResidual(input_channels, output_channels, 2)]
            units += [
                InvertedResidual(output_channels, output_channels, 1) for _ in range(repeats - 1)
            ]
            setattr(self, name, nn.Sequential(*units))
            input_channels = output_channels

        output_channels = stages_out_channels[-1]
        self.conv5 = nn.Sequential(
            nn.Conv2d(input_channels, output_channels, 1, 1, 0, bias=False),
            nn.BatchNorm2d(output_channels),
            nn.ReLU(inplace=True),
        )
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.flatten = nn.Flatten(1)
        self.fc = nn.Linear(output_channels, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.conv1(x))
        x = self.stage2(x)
        x = self.stage3(x)
        x = self.stage4(x)
        x = self.conv5(x)
        x = self.flatten(self.avgpool(x))
        return self.fc(x)


@register_model(
    family="shufflenet_v2",
    year=2018,
    paper=_PAPER,
    torchvision_name="shufflenet_v2_x1_0",
    top1=69.362,
)
def shufflenet_v2_x1_0(num_classes: int = 1000, **cfg) -> ShuffleNetV2:
    return ShuffleNetV2(STAGES_REPEATS, STAGES_OUT_CHANNELS["x1_0"], num_classes=num_classes, **cfg)


__all__ = [
    "STAGES_OUT_CHANNELS",
    "STAGES_REPEATS",
    "ChannelShuffle",
    "InvertedResidual",
    "ShuffleNetV2",
    "shufflenet_v2_x1_0",
]
