"""ResNet (He et al. 2015), ResNeXt (Xie et al. 2016) and Wide ResNet (Zagoruyko & Komodakis 2016).

One class, ``ResNet``; a variant is a block type plus a per-stage depth list (the paper's
Table 1), and ResNeXt / Wide ResNet are the same network with ``groups`` and
``width_per_group`` changed. Attribute names follow torchvision (``conv1``, ``bn1``,
``layer1..4``, ``fc``, ``downsample``), so a torchvision state dict loads unchanged.

Stride placement. The paper puts a stage's stride-2 on the first 1×1 convolution of its
first Bottleneck ("v1"); torchvision moves it to the 3×3 ("v1.5", about +0.5 % top-1 and
more MACs, since the 1×1 then runs at full resolution). We build v1.5 by default so
torchvision weights mean what they were trained to mean; ``stride_in_1x1=True`` builds the
paper's v1, which is what the lecture's GFLOP column describes. Both have the same
parameters (and the same state-dict keys); only the MACs and the function differ.
BasicBlock networks (resnet18/34) are the same in both.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor, nn

from deploykit.zoo._registry import register_model

_PAPER = "Deep Residual Learning for Image Recognition (He, Zhang, Ren, Sun)"
_RESNEXT_PAPER = "Aggregated Residual Transformations for Deep Neural Networks (Xie et al.)"
_WIDE_PAPER = "Wide Residual Networks (Zagoruyko, Komodakis)"

NormLayer = Callable[[int], nn.Module]


def conv3x3(in_planes: int, out_planes: int, stride: int = 1, groups: int = 1) -> nn.Conv2d:
    """3×3 convolution with padding 1 and no bias (a norm layer follows)."""
    return nn.Conv2d(in_planes, out_planes, 3, stride=stride, padding=1, groups=groups, bias=False)


def conv1x1(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    """1×1 convolution without bias (a norm layer follows)."""
    return nn.Conv2d(in_planes, out_planes, 1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """Two 3×3 convolutions and an identity (or projected) shortcut: resnet18/34."""

    expansion = 1

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        groups: int = 1,
        base_width: int = 64,
        norm_layer: NormLayer = nn.BatchNorm2d,
        stride_in_1x1: bool = False,
    ) -> None:
        super().__init__()
        if groups != 1 or base_width != 64:
            raise ValueError("BasicBlock only supports groups=1 and width_per_group=64")
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = norm_layer(planes)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = norm_layer(planes)
        self.downsample = downsample
        # Applied after the addition: its own module so each op site is a row of its own.
        self.relu2 = nn.ReLU(inplace=True)
        self.stride = stride

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu2(out + identity)


class Bottleneck(nn.Module):
    """1×1 reduce, 3×3 (grouped for ResNeXt), 1×1 expand by ``expansion``: resnet50 and up."""

    expansion = 4

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        groups: int = 1,
        base_width: int = 64,
        norm_layer: NormLayer = nn.BatchNorm2d,
        stride_in_1x1: bool = False,
    ) -> None:
        super().__init__()
        width = int(planes * (base_width / 64.0)) * groups
        # v1 (paper): stride on the first 1×1; v1.5 (torchvision): stride on the 3×3.
        stride_1x1, stride_3x3 = (stride, 1) if stride_in_1x1 else (1, stride)
        self.conv1 = conv1x1(inplanes, width, stride_1x1)
        self.bn1 = norm_layer(width)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(width, width, stride_3x3, groups)
        self.bn2 = norm_layer(width)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv3 = conv1x1(width, planes * self.expansion)
        self.bn3 = norm_layer(planes * self.expansion)
        self.downsample = downsample
        self.relu3 = nn.ReLU(inplace=True)
        self.stride = stride

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.relu2(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu3(out + identity)


Block = type[BasicBlock] | type[Bottleneck]


def init_resnet_weights(model: nn.Module) -> None:
    """torchvision's ResNet init: He (fan-out) convolutions, norm layers at weight 1, bias 0."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.constant_(m.weight, 1)
            nn.init.constant_(m.bias, 0)


class ResNet(nn.Module):
    """Stem (7×7/2 conv, 3×3/2 max pool), four stages of residual blocks, global pool, one FC.

    ``layers`` is the paper's blocks-per-stage list, e.g. ``[3, 4, 6, 3]`` for resnet50.
    Any input of at least 32×32 and any ``num_classes`` work (the head is a global pool).
    """

    def __init__(
        self,
        block: Block,
        layers: list[int],
        num_classes: int = 1000,
        zero_init_residual: bool = False,
        groups: int = 1,
        width_per_group: int = 64,
        norm_layer: NormLayer | None = None,
        stride_in_1x1: bool = False,
    ) -> None:
        super().__init__()
        if len(layers) != 4:
            raise ValueError(f"layers must list 4 stage depths, got {layers}")
        self._norm_layer: NormLayer = norm_layer or nn.BatchNorm2d
        self.inplanes = 64
        self.groups = groups
        self.base_width = width_per_group
        self.stride_in_1x1 = stride_in_1x1
        # N x 3 x 224 x 224
        self.conv1 = nn.Conv2d(3, self.inplanes, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = self._norm_layer(self.inplanes)
        self.relu = nn.ReLU(inplace=True)
        # N x 64 x 112 x 112
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        # N x 64 x 56 x 56
        self.layer1 = self._make_layer(block, 64, layers[0])
        # N x 64*e x 56 x 56
        self.layer2 = self._make_layer(block, 128, layers[1], stride=2)
        # N x 128*e x 28 x 28
        self.layer3 = self._make_layer(block, 256, layers[2], stride=2)
        # N x 256*e x 14 x 14
        self.layer4 = self._make_layer(block, 512, layers[3], stride=2)
        # N x 512*e x 7 x 7
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.flatten = nn.Flatten(1)
        self.fc = nn.Linear(512 * block.expansion, num_classes)

        init_resnet_weights(self)
        if zero_init_residual:
            # Each residual branch starts as zero, so every block starts as the identity.
            for m in self.modules():
                if isinstance(m, Bottleneck):
                    nn.init.constant_(m.bn3.weight, 0)
                elif isinstance(m, BasicBlock):
                    nn.init.constant_(m.bn2.weight, 0)

    def _make_layer(self, block: Block, planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
        downsample = None
        # A projection only where the shortcut's shape changes (stride or channel count).
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                conv1x1(self.inplanes, planes * block.expansion, stride),
                self._norm_layer(planes * block.expansion),
            )
        common = dict(
            groups=self.groups,
            base_width=self.base_width,
            norm_layer=self._norm_layer,
            stride_in_1x1=self.stride_in_1x1,
        )
        layers = [block(self.inplanes, planes, stride, downsample, **common)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes, **common) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        x = self.layer4(x)
        x = self.flatten(self.avgpool(x))
        return self.fc(x)


def _resnet(block: Block, layers: list[int], num_classes: int, **cfg) -> ResNet:
    return ResNet(block, layers, num_classes=num_classes, **cfg)


@register_model(family="resnet", year=2015, paper=_PAPER, torchvision_name="resnet18", top1=69.758)
def resnet18(num_classes: int = 1000, **cfg) -> ResNet:
    return _resnet(BasicBlock, [2, 2, 2, 2], num_classes, **cfg)


@register_model(family="resnet", year=2015, paper=_PAPER, torchvision_name="resnet34", top1=73.314)
def resnet34(num_classes: int = 1000, **cfg) -> ResNet:
    return _resnet(BasicBlock, [3, 4, 6, 3], num_classes, **cfg)


@register_model(family="resnet", year=2015, paper=_PAPER, torchvision_name="resnet50", top1=76.13)
def resnet50(num_classes: int = 1000, **cfg) -> ResNet:
    return _resnet(Bottleneck, [3, 4, 6, 3], num_classes, **cfg)


@register_model(family="resnet", year=2015, paper=_PAPER, torchvision_name="resnet101", top1=77.374)
def resnet101(num_classes: int = 1000, **cfg) -> ResNet:
    return _resnet(Bottleneck, [3, 4, 23, 3], num_classes, **cfg)


@register_model(family="resnet", year=2015, paper=_PAPER, torchvision_name="resnet152", top1=78.312)
def resnet152(num_classes: int = 1000, **cfg) -> ResNet:
    return _resnet(Bottleneck, [3, 8, 36, 3], num_classes, **cfg)


@register_model(
    family="resnext",
    year=2016,
    paper=_RESNEXT_PAPER,
    torchvision_name="resnext50_32x4d",
    top1=77.618,
)
def resnext50_32x4d(num_classes: int = 1000, **cfg) -> ResNet:
    cfg = {"groups": 32, "width_per_group": 4, **cfg}
    return _resnet(Bottleneck, [3, 4, 6, 3], num_classes, **cfg)


@register_model(
    family="wide_resnet",
    year=2016,
    paper=_WIDE_PAPER,
    torchvision_name="wide_resnet50_2",
    top1=78.468,
)
def wide_resnet50_2(num_classes: int = 1000, **cfg) -> ResNet:
    # Twice the bottleneck width (64 -> 128 per group); the block outputs stay the same.
    cfg = {"width_per_group": 64 * 2, **cfg}
    return _resnet(Bottleneck, [3, 4, 6, 3], num_classes, **cfg)


__all__ = [
    "BasicBlock",
    "Bottleneck",
    "ResNet",
    "resnet18",
    "resnet34",
    "resnet50",
    "resnet101",
    "resnet152",
    "resnext50_32x4d",
    "wide_resnet50_2",
]
