"""MobileNetV2 (Sandler et al. 2018): inverted residuals with linear bottlenecks.

The network is the paper's Table 2, kept as its ``t, c, n, s`` rows (expansion factor,
output channels, repeats, first stride). Attribute names follow torchvision
(``features``, ``classifier``; ``features.N.conv`` inside each block), so a torchvision state
dict loads unchanged.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor, nn

from deploykit.zoo._registry import register_model

_PAPER = "MobileNetV2: Inverted Residuals and Linear Bottlenecks (Sandler et al.)"

NormLayer = Callable[[int], nn.Module]

# t (expansion), c (output channels), n (repeats), s (stride of the first repeat): Table 2.
INVERTED_RESIDUAL_SETTING: tuple[tuple[int, int, int, int], ...] = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round a channel count to a multiple of ``divisor``, never more than 10 % below ``value``."""
    min_value = min_value or divisor
    new_value = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if new_value < 0.9 * value:
        new_value += divisor
    return new_value


class ConvBNReLU6(nn.Sequential):
    """Conv (no bias), norm, ReLU6: indices 0/1/2 as torchvision's ``Conv2dNormActivation``."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        groups: int = 1,
        norm_layer: NormLayer = nn.BatchNorm2d,
    ) -> None:
        padding = (kernel_size - 1) // 2
        super().__init__(
            nn.Conv2d(
                in_channels, out_channels, kernel_size, stride, padding, groups=groups, bias=False
            ),
            norm_layer(out_channels),
            nn.ReLU6(inplace=True),
        )
        self.out_channels = out_channels


class InvertedResidual(nn.Module):
    """1×1 expand (by ``t``), 3×3 depthwise, 1×1 linear projection; residual when shapes match."""

    def __init__(
        self,
        inp: int,
        oup: int,
        stride: int,
        expand_ratio: int,
        norm_layer: NormLayer = nn.BatchNorm2d,
    ) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"stride should be 1 or 2, got {stride}")
        self.stride = stride
        hidden_dim = int(round(inp * expand_ratio))
        self.use_res_connect = stride == 1 and inp == oup
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(ConvBNReLU6(inp, hidden_dim, kernel_size=1, norm_layer=norm_layer))
        layers += [
            ConvBNReLU6(
                hidden_dim, hidden_dim, stride=stride, groups=hidden_dim, norm_layer=norm_layer
            ),
            # The projection is linear: a ReLU here would destroy information (the paper's §3.2).
            nn.Conv2d(hidden_dim, oup, 1, 1, 0, bias=False),
            norm_layer(oup),
        ]
        self.conv = nn.Sequential(*layers)
        self.out_channels = oup

    def forward(self, x: Tensor) -> Tensor:
        if self.use_res_connect:
            return x + self.conv(x)
        return self.conv(x)


class MobileNetV2(nn.Module):
    """Stem 3×3/2 conv, the ``t, c, n, s`` table of inverted residuals, 1×1 to 1280, GAP, FC.

    ``width_mult`` scales every width (rounded to ``round_nearest``). Any ``num_classes`` and
    any input size work (the head is a global pool).
    """

    def __init__(
        self,
        num_classes: int = 1000,
        width_mult: float = 1.0,
        inverted_residual_setting: tuple[tuple[int, int, int, int], ...] | None = None,
        round_nearest: int = 8,
        norm_layer: NormLayer | None = None,
        dropout: float = 0.2,
    ) -> None:
        super().__init__()
        norm_layer = norm_layer or nn.BatchNorm2d
        setting = inverted_residual_setting or INVERTED_RESIDUAL_SETTING
        if not setting or any(len(row) != 4 for row in setting):
            raise ValueError(f"inverted_residual_setting must be rows of (t, c, n, s): {setting}")
        input_channel = make_divisible(32 * width_mult, round_nearest)
        self.last_channel = make_divisible(1280 * max(1.0, width_mult), round_nearest)

        # N x 3 x 224 x 224 -> N x 32 x 112 x 112
        features: list[nn.Module] = [ConvBNReLU6(3, input_channel, stride=2, norm_layer=norm_layer)]
        for t, c, n, s in setting:
            output_channel = make_divisible(c * width_mult, round_nearest)
            for i in range(n):
                stride = s if i == 0 else 1
                features.append(
                    InvertedResidual(input_channel, output_channel, stride, t, norm_layer)
                )
                input_channel = output_channel
        # N x 320 x 7 x 7 -> N x 1280 x 7 x 7
        features.append(
            ConvBNReLU6(input_channel, self.last_channel, kernel_size=1, norm_layer=norm_layer)
        )
        self.features = nn.Sequential(*features)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.flatten = nn.Flatten(1)
        self.classifier = nn.Sequential(
            nn.Dropout(p=dropout),
            nn.Linear(self.last_channel, num_classes),
        )

        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor:
        x = self.features(x)
        x = self.flatten(self.avgpool(x))
        return self.classifier(x)


@register_model(
    family="mobilenet_v2",
    year=2018,
    paper=_PAPER,
    torchvision_name="mobilenet_v2",
    top1=71.878,
)
def mobilenet_v2(num_classes: int = 1000, **cfg) -> MobileNetV2:
    return MobileNetV2(num_classes=num_classes, **cfg)


__all__ = ["INVERTED_RESIDUAL_SETTING", "InvertedResidual", "MobileNetV2", "mobilenet_v2"]
