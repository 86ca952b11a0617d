"""Image encoders in plain torch (no torchvision): backbone -> global pooling -> projection -> L2 norm.

ResNet-18/50 and DenseNet-121 reproduce torchvision's module names, so a torchvision
state dict saved to a local file loads with `load_init_weights` (DESIGN §8). The small
CNN is radsim's own: a 4x4/4 patchify stem makes 128 px cheap enough to train at
hundreds of images/s on 2 CPU cores.
"""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from radsim.data_contracts import UsageError
from radsim.data_contracts.settings import check_value

from .config import DEFAULT_EMBEDDING_DIM, TrainConfig

BACKBONES = ("small", "resnet18", "resnet50", "densenet121")
__all__ = ["BACKBONES", "EmbeddingNet", "LoadReport", "build_backbone", "build_encoder", "load_init_weights"]


# ------------------------------------------------------------------------- small CNN
class ConvBNReLU(nn.Sequential):
    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, padding: int):
        super().__init__(
            nn.Conv2d(c_in, c_out, kernel, stride, padding, bias=False),
            nn.BatchNorm2d(c_out),
            nn.ReLU(inplace=True),
        )


class ResidualConv(nn.Module):
    """x + BN(conv3x3(x)), then ReLU: depth without a harder optimisation problem."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, 1, 1, bias=False)
        self.bn = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x + self.bn(self.conv(x)))


class SmallCNN(nn.Module):
    """Patchify stem (4x4, stride 4), then per stage a 3x3/2 conv and a residual 3x3 conv."""

    first_conv_key = "stem.0.weight"

    def __init__(self, in_channels: int = 1, widths: Sequence[int] = (32, 64, 128, 256)):
        super().__init__()
        self.stem = ConvBNReLU(in_channels, widths[0], 4, 4, 0)
        self.stem_block = ResidualConv(widths[0])
        self.stages = nn.Sequential(
            *[nn.Sequential(ConvBNReLU(a, b, 3, 2, 1), ResidualConv(b)) for a, b in zip(widths[:-1], widths[1:])]
        )
        self.out_channels = widths[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.stages(self.stem_block(self.stem(x)))


# --------------------------------------------------------------- ResNet (torchvision names)
def _conv3x3(c_in: int, c_out: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)


def _conv1x1(c_in: int, c_out: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, 1, stride, bias=False)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = _conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """torchvision's ResNet v1.5 bottleneck: the stride sits on the 3x3 conv."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = _conv1x1(inplanes, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = _conv3x3(planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = _conv1x1(planes, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNet(nn.Module):
    """torchvision.models.ResNet without avgpool/fc: returns the last feature map."""

    first_conv_key = "conv1.weight"
    head_prefixes = ("fc.",)

    def __init__(self, block: type[BasicBlock] | type[Bottleneck], layers: Sequence[int], in_channels: int = 1):
        super().__init__()
        self.inplanes = 64
        self.conv1 = nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.layer1 = self._make_layer(block, 64, layers[0])
        self.layer2 = self._make_layer(block, 128, layers[1], 2)
        self.layer3 = self._make_layer(block, 256, layers[2], 2)
        self.layer4 = self._make_layer(block, 512, layers[3], 2)
        self.out_channels = 512 * block.expansion
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def _make_layer(self, block, planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                _conv1x1(self.inplanes, planes * block.expansion, stride), nn.BatchNorm2d(planes * block.expansion)
            )
        layers = [block(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


# ------------------------------------------------------------ DenseNet (torchvision names)
class _DenseLayer(nn.Module):
    def __init__(self, c_in: int, growth: int, bn_size: int):
        super().__init__()
        self.norm1 = nn.BatchNorm2d(c_in)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(c_in, bn_size * growth, 1, 1, bias=False)
        self.norm2 = nn.BatchNorm2d(bn_size * growth)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(bn_size * growth, growth, 3, 1, 1, bias=False)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        x = torch.cat(features, 1)
        x = self.conv1(self.relu1(self.norm1(x)))
        return self.conv2(self.relu2(self.norm2(x)))


class _DenseBlock(nn.ModuleDict):
    def __init__(self, num_layers: int, c_in: int, bn_size: int, growth: int):
        super().__init__()
        for i in range(num_layers):
            self.add_module(f"denselayer{i + 1}", _DenseLayer(c_in + i * growth, growth, bn_size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = [x]
        for layer in self.values():
            features.append(layer(features))
        return torch.cat(features, 1)


class _Transition(nn.Sequential):
    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.norm = nn.BatchNorm2d(c_in)
        self.relu = nn.ReLU(inplace=True)
        self.conv = nn.Conv2d(c_in, c_out, 1, 1, bias=False)
        self.pool = nn.AvgPool2d(2, 2)


class DenseNet(nn.Module):
    """torchvision.models.DenseNet without the classifier: returns relu(features(x))."""

    first_conv_key = "features.conv0.weight"
    head_prefixes = ("classifier.",)

    def __init__(self, growth: int = 32, blocks: Sequence[int] = (6, 12, 24, 16), init_features: int = 64,
                 bn_size: int = 4, in_channels: int = 1):
        super().__init__()
        mods: OrderedDict[str, nn.Module] = OrderedDict(
            conv0=nn.Conv2d(in_channels, init_features, 7, 2, 3, bias=False),
            norm0=nn.BatchNorm2d(init_features),
            relu0=nn.ReLU(inplace=True),
            pool0=nn.MaxPool2d(3, 2, 1),
        )
        c = init_features
        for i, n_layers in enumerate(blocks):
            mods[f"denseblock{i + 1}"] = _DenseBlock(n_layers, c, bn_size, growth)
            c += n_layers * growth
            if i != len(blocks) - 1:
                mods[f"transition{i + 1}"] = _Transition(c, c // 2)
                c //= 2
        mods["norm5"] = nn.BatchNorm2d(c)
        self.features = nn.Sequential(mods)
        self.out_channels = c
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.features(x))


# ------------------------------------------------------------------------ embedding net
class EmbeddingNet(nn.Module):
    """backbone -> global average pooling -> linear projection to D -> L2 normalisation.

    The projection and the normalisation run in float32 even under bf16 autocast, so the
    distances the losses see are not rounded to bf16.
    """

    def __init__(
        self, backbone: nn.Module, backbone_name: str, embedding_dim: int = DEFAULT_EMBEDDING_DIM, in_channels: int = 1
    ):
        super().__init__()
        self.backbone = backbone
        self.projection = nn.Linear(backbone.out_channels, embedding_dim)
        self.backbone_name = backbone_name
        self.embedding_dim = embedding_dim
        self.in_channels = in_channels

    def config(self) -> dict[str, object]:
        """What `build_encoder(**config)` needs to rebuild this network (checkpoints, model card)."""
        return {"backbone": self.backbone_name, "embedding_dim": self.embedding_dim, "in_channels": self.in_channels}

    def pooled(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(F.adaptive_avg_pool2d(self.backbone(x), 1), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = self.pooled(x)
        with torch.autocast(device_type=feats.device.type, enabled=False):
            z = self.projection(feats.float())
            return F.normalize(z, dim=1)


def build_backbone(backbone: str, in_channels: int = 1) -> nn.Module:
    name = backbone.lower()
    if name == "small":
        return SmallCNN(in_channels)
    if name == "resnet18":
        return ResNet(BasicBlock, (2, 2, 2, 2), in_channels)
    if name == "resnet50":
        return ResNet(Bottleneck, (3, 4, 6, 3), in_channels)
    if name == "densenet121":
        return DenseNet(32, (6, 12, 24, 16), 64, 4, in_channels)
    raise UsageError(f"unknown backbone {backbone!r}: choose one of {', '.join(BACKBONES)}")


def build_encoder(backbone: str, embedding_dim: int = DEFAULT_EMBEDDING_DIM, in_channels: int = 1) -> EmbeddingNet:
    """An untrained encoder: `backbone` is one of BACKBONES."""
    check_value(TrainConfig, "embedding_dim", embedding_dim, "encoder", as_flag=False)
    return EmbeddingNet(build_backbone(backbone, in_channels), backbone.lower(), embedding_dim, in_channels)


from .init_weights import LoadReport, load_init_weights  # noqa: E402  (re-exported: `--init-weights`)
