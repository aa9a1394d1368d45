"""Pre-activation ResNet (He et al. 2016, "Identity Mappings in Deep Residual Networks").

Each residual branch is BN-ReLU-Conv (the activation comes *before* the convolution), and
nothing follows the addition, so the shortcut path is a pure identity from block to block.
Consequences that shape this file (a different block family, hence its own file, as timm's
``resnetv2.py``):
- the stem is conv1 + max pool only: the first block's BN-ReLU normalizes the stem output;
- when a block changes shape, its 1×1 projection shortcut reads the *pre-activated* input
  (BN-ReLU(x)), as in the paper's and timm's implementations;
- the last stage's output is not normalized by any block, so the network ends with a final
  BN-ReLU before global pooling.
Depths and widths are ResNet's (``[2, 2, 2, 2]`` basic, ``[3, 4, 6, 3]`` bottleneck, v1.5
stride on the 3×3). torchvision has no such model, so there are no published weights.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor, nn

from deploykit.zoo._registry import register_model
from deploykit.zoo.resnet import init_resnet_weights

_PAPER = "Identity Mappings in Deep Residual Networks (He, Zhang, Ren, Sun)"

NormLayer = Callable[[int], nn.Module]


class PreActBasicBlock(nn.Module):
    """BN-ReLU-3×3 conv, BN-ReLU-3×3 conv, plus the shortcut."""

    expansion = 1

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        norm_layer: NormLayer = nn.BatchNorm2d,
    ) -> None:
        super().__init__()
        self.bn1 = norm_layer(inplanes)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = norm_layer(planes)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        preact = self.relu1(self.bn1(x))
        # The projection shortcut sees the pre-activated input; the identity sees x itself.
        shortcut = x if self.downsample is None else self.downsample(preact)
        out = self.conv1(preact)
        out = self.conv2(self.relu2(self.bn2(out)))
        return out + shortcut


class PreActBottleneck(nn.Module):
    """BN-ReLU-1×1 reduce, BN-ReLU-3×3 (stride here), BN-ReLU-1×1 expand, plus the shortcut."""

    expansion = 4

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        norm_layer: NormLayer = nn.BatchNorm2d,
    ) -> None:
        super().__init__()
        self.bn1 = norm_layer(inplanes)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn2 = norm_layer(planes)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn3 = norm_layer(planes)
        self.relu3 = nn.ReLU(inplace=True)
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, 1, bias=False)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        preact = self.relu1(self.bn1(x))
        shortcut = x if self.downsample is None else self.downsample(preact)
        out = self.conv1(preact)
        out = self.conv2(self.relu2(self.bn2(out)))
        out = self.conv3(self.relu3(self.bn3(out)))
        return out + shortcut


Block = type[PreActBasicBlock] | type[PreActBottleneck]


class PreActResNet(nn.Module):
    """conv1 7×7/2, max pool, four stages of pre-activation blocks, BN-ReLU, GAP, FC.

    Any input of at least 32×32 and any ``num_classes`` work (the head is a global pool).
    """

    def __init__(
        self,
        block: Block,
        layers: list[int],
        num_classes: int = 1000,
        norm_layer: NormLayer | None = None,
    ) -> None:
        super().__init__()
        if len(layers) != 4:
            raise ValueError(f"layers must list 4 stage depths, got {layers}")
        self._norm_layer: NormLayer = norm_layer or nn.BatchNorm2d
        self.inplanes = 64
        # N x 3 x 224 x 224 -> N x 64 x 112 x 112 (no BN-ReLU: the first block applies it)
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
        # -> N x 64 x 56 x 56
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, 64, layers[0])
        self.layer2 = self._make_layer(block, 128, layers[1], stride=2)
        self.layer3 = self._make_layer(block, 256, layers[2], stride=2)
        self.layer4 = self._make_layer(block, 512, layers[3], stride=2)
        # N x 512*e x 7 x 7: the final pre-activation no block applied.
        self.bn_final = self._norm_layer(512 * block.expansion)
        self.relu_final = nn.ReLU(inplace=True)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.flatten = nn.Flatten(1)
        self.fc = nn.Linear(512 * block.expansion, num_classes)
        init_resnet_weights(self)

    def _make_layer(self, block: Block, planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
        downsample = None
        # A projection only where the shortcut's shape changes; no norm after it (pre-act).
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes * block.expansion, 1, stride=stride, bias=False)
            )
        layers = [block(self.inplanes, planes, stride, downsample, self._norm_layer)]
        self.inplanes = planes * block.expansion
        layers += [
            block(self.inplanes, planes, norm_layer=self._norm_layer) for _ in range(1, blocks)
        ]
        return nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.conv1(x))
        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        x = self.layer4(x)
        x = self.relu_final(self.bn_final(x))
        x = self.flatten(self.avgpool(x))
        return self.fc(x)


@register_model(family="preact_resnet", year=2016, paper=_PAPER)
def preact_resnet18(num_classes: int = 1000, **cfg) -> PreActResNet:
    return PreActResNet(PreActBasicBlock, [2, 2, 2, 2], num_classes=num_classes, **cfg)


@register_model(family="preact_resnet", year=2016, paper=_PAPER)
def preact_resnet50(num_classes: int = 1000, **cfg) -> PreActResNet:
    return PreActResNet(PreActBottleneck, [3, 4, 6, 3], num_classes=num_classes, **cfg)


__all__ = [
    "PreActBasicBlock",
    "PreActBottleneck",
    "PreActResNet",
    "preact_resnet18",
    "preact_resnet50",
]
