"""VGG (Simonyan & Zisserman 2014): stacks of 3×3 convolutions, five max pools, three FC layers.

Every variant is one row of ``VGG_STAGES``, the paper's Table 1 read per stage: how many
3×3 convolutions each of the five stages has (widths 64, 128, 256, 512, 512; a 2×2 max pool
ends each stage). ``_bn`` variants add BatchNorm after every convolution (not in the paper;
torchvision's). Attribute names follow torchvision (``features``, ``avgpool``,
``classifier``), so a torchvision state dict loads unchanged.
"""

from __future__ import annotations

from torch import Tensor, nn

from deploykit.zoo._registry import register_model

_PAPER = "Very Deep Convolutional Networks for Large-Scale Image Recognition (Simonyan, Zisserman)"

STAGE_WIDTHS: tuple[int, ...] = (64, 128, 256, 512, 512)

# Convolutions per stage; the paper's configurations A, B, D and E.
VGG_STAGES: dict[str, tuple[int, ...]] = {
    "vgg11": (1, 1, 2, 2, 2),  # A
    "vgg13": (2, 2, 2, 2, 2),  # B
    "vgg16": (2, 2, 3, 3, 3),  # D
    "vgg19": (2, 2, 4, 4, 4),  # E
}


def make_features(stages: tuple[int, ...], batch_norm: bool = False) -> nn.Sequential:
    """The convolutional trunk: per stage, ``n`` × (3×3 conv [+ BN] + ReLU), then a 2×2 max pool."""
    layers: list[nn.Module] = []
    in_channels = 3
    for width, convs in zip(STAGE_WIDTHS, stages, strict=True):
        for _ in range(convs):
            layers.append(nn.Conv2d(in_channels, width, kernel_size=3, padding=1))
            if batch_norm:
                layers.append(nn.BatchNorm2d(width))
            layers.append(nn.ReLU(inplace=True))
            in_channels = width
        layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
    return nn.Sequential(*layers)


class VGG(nn.Module):
    """``features`` (conv trunk), 7×7 adaptive average pool, three FC layers (4096-4096-classes).

    At 224×224 the trunk ends at 512×7×7 and the pool is the identity; smaller inputs (down to
    32×32) still work because the pool upsamples to 7×7 (the FC layers keep their shape).
    """

    def __init__(
        self,
        features: nn.Sequential,
        num_classes: int = 1000,
        init_weights: bool = True,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        self.features = features
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.flatten = nn.Flatten(1)
        self.classifier = nn.Sequential(
            nn.Linear(512 * 7 * 7, 4096),
            nn.ReLU(inplace=True),
            nn.Dropout(p=dropout),
            nn.Linear(4096, 4096),
            nn.ReLU(inplace=True),
            nn.Dropout(p=dropout),
            nn.Linear(4096, num_classes),
        )
        if init_weights:
            for m in self.modules():
                if isinstance(m, nn.Conv2d):
                    nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                    nn.init.constant_(m.bias, 0)
                elif isinstance(m, nn.BatchNorm2d):
                    nn.init.constant_(m.weight, 1)
                    nn.init.constant_(m.bias, 0)
                elif isinstance(m, nn.Linear):
                    nn.init.normal_(m.weight, 0, 0.01)
                    nn.init.constant_(m.bias, 0)

    def forward(self, x: Tensor) -> Tensor:
        x = self.features(x)
        x = self.flatten(self.avgpool(x))
        return self.classifier(x)


def _vgg(variant: str, batch_norm: bool, num_classes: int, **cfg) -> VGG:
    return VGG(make_features(VGG_STAGES[variant], batch_norm), num_classes=num_classes, **cfg)


def _card(torchvision_name: str, top1: float) -> dict:
    return dict(
        family="vgg",
        year=2014,
        paper=_PAPER,
        torchvision_name=torchvision_name,
        top1=top1,
        global_pool=False,
    )


@register_model(**_card("vgg11", 69.02))
def vgg11(num_classes: int = 1000, **cfg) -> VGG:
    return _vgg("vgg11", False, num_classes, **cfg)


@register_model(**_card("vgg13", 69.928))
def vgg13(num_classes: int = 1000, **cfg) -> VGG:
    return _vgg("vgg13", False, num_classes, **cfg)


@register_model(**_card("vgg16", 71.592))
def vgg16(num_classes: int = 1000, **cfg) -> VGG:
    return _vgg("vgg16", False, num_classes, **cfg)


@register_model(**_card("vgg19", 72.376))
def vgg19(num_classes: int = 1000, **cfg) -> VGG:
    return _vgg("vgg19", False, num_classes, **cfg)


@register_model(**_card("vgg11_bn", 70.37))
def vgg11_bn(num_classes: int = 1000, **cfg) -> VGG:
    return _vgg("vgg11", True, num_classes, **cfg)


@register_model(**_card("vgg13_bn", 71.586))
def vgg13_bn(num_classes: int = 1000, **cfg) -> VGG:
    return _vgg("vgg13", True, num_classes, **cfg)


@register_model(**_card("vgg16_bn", 73.36))
def vgg16_bn(num_classes: int = 1000, **cfg) -> VGG:
    return _vgg("vgg16", True, num_classes, **cfg)


@register_model(**_card("vgg19_bn", 74.218))
def vgg19_bn(num_classes: int = 1000, **cfg) -> VGG:
    return _vgg("vgg19", True, num_classes, **cfg)


__all__ = ["STAGE_WIDTHS", "VGG", "VGG_STAGES", "make_features"] + [
    f"{v}{bn}" for v in VGG_STAGES for bn in ("", "_bn")
]
