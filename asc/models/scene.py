"""The two-stage scene ensemble of Hu et al. (DCASE 2020 task 1a), as the ASC paper uses it.

Three architectures (FCNN, fsFCNN, ResNet) each classify the fine classes and, separately, the
coarse groups (indoor / outdoor / transportation for DCASE). A fine class's score is its mean
fine probability times the mean coarse probability of its group. Sizes come from presets:
``paper`` is close to the published ~130 M parameters; ``compact`` serves on two CPU cores.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

ARCHITECTURES = ("fcnn", "fsfcnn", "resnet")


@dataclass(frozen=True)
class Preset:
    widths: tuple[int, ...]  # channels per stage
    convs_per_stage: int
    resnet_widths: tuple[int, ...]
    resnet_blocks: int

    def to_dict(self) -> dict:
        return asdict(self)


PRESETS = {
    "compact": Preset(
        widths=(12, 24, 48, 48), convs_per_stage=1, resnet_widths=(12, 24, 48), resnet_blocks=1
    ),
    "paper": Preset(
        widths=(192, 384, 768, 768),
        convs_per_stage=2,
        resnet_widths=(128, 256, 512),
        resnet_blocks=2,
    ),
}


class ChannelAttention(nn.Module):
    """Channel attention from average- and max-pooled descriptors (the Hu et al. system's)."""

    def __init__(self, channels: int, reduction: int = 4):
        super().__init__()
        hidden = max(4, channels // reduction)
        self.mlp = nn.Sequential(
            nn.Linear(channels, hidden), nn.ReLU(), nn.Linear(hidden, channels)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weights = self.mlp(x.mean(dim=(2, 3))) + self.mlp(x.amax(dim=(2, 3)))
        return x * torch.sigmoid(weights)[:, :, None, None]


def conv_bn_relu(c_in: int, c_out: int, stride: tuple[int, int] = (1, 1)) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


class ClassifierHead(nn.Module):
    """1x1 convolution to class maps, batch norm, global average pooling -> logits."""

    def __init__(self, channels: int, classes: int):
        super().__init__()
        self.attention = ChannelAttention(channels)
        self.classify = nn.Sequential(
            nn.Conv2d(channels, classes, 1, bias=False), nn.BatchNorm2d(classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classify(self.attention(x)).mean(dim=(2, 3))


class FCNN(nn.Module):
    """Fully convolutional stages; ``frequency_subsampled`` pools frequency harder (fsFCNN)."""

    def __init__(self, in_channels: int, classes: int, preset: Preset, frequency_subsampled: bool):
        super().__init__()
        layers: list[nn.Module] = []
        c_in = in_channels
        last = len(preset.widths) - 1
        for stage, width in enumerate(preset.widths):
            for i in range(preset.convs_per_stage):
                stride = (2, 1) if frequency_subsampled and stage == 0 and i == 0 else (1, 1)
                layers.append(conv_bn_relu(c_in, width, stride))
                c_in = width
            if stage < last:
                layers.append(nn.MaxPool2d((4, 2) if frequency_subsampled and stage == 0 else 2))
        self.features = nn.Sequential(*layers)
        self.head = ClassifierHead(c_in, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class ResidualBlock(nn.Module):
    """Pre-activation residual block; a 1x1 projection when the shape changes."""

    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.BatchNorm2d(c_in),
            nn.ReLU(),
            nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False),
            nn.BatchNorm2d(c_out),
            nn.ReLU(),
            nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False),
        )
        self.skip = (
            nn.Identity()
            if c_in == c_out and stride == 1
            else nn.Conv2d(c_in, c_out, 1, stride, bias=False)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + self.skip(x)


class SplitResNet(nn.Module):
    """Two residual paths, one for the low and one for the high half of the mel bands."""

    def __init__(self, in_channels: int, classes: int, preset: Preset):
        super().__init__()
        self.paths = nn.ModuleList([self._path(in_channels, preset) for _ in range(2)])
        self.head = ClassifierHead(preset.resnet_widths[-1], classes)

    @staticmethod
    def _path(in_channels: int, preset: Preset) -> nn.Sequential:
        layers: list[nn.Module] = [
            nn.Conv2d(in_channels, preset.resnet_widths[0], 3, 2, 1, bias=False)
        ]
        c_in = preset.resnet_widths[0]
        for stage, width in enumerate(preset.resnet_widths):
            for block in range(preset.resnet_blocks):
                stride = 2 if stage > 0 and block == 0 else 1
                layers.append(ResidualBlock(c_in, width, stride))
                c_in = width
        layers += [nn.BatchNorm2d(c_in), nn.ReLU()]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        half = x.shape[2] // 2
        low, high = self.paths[0](x[:, :, :half]), self.paths[1](x[:, :, half:])
        return self.head(torch.cat([low, high], dim=2))


def build_submodel(architecture: str, in_channels: int, classes: int, preset: str) -> nn.Module:
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; known: {', '.join(PRESETS)}")
    p = PRESETS[preset]
    if architecture == "fcnn":
        return FCNN(in_channels, classes, p, frequency_subsampled=False)
    if architecture == "fsfcnn":
        return FCNN(in_channels, classes, p, frequency_subsampled=True)
    if architecture == "resnet":
        return SplitResNet(in_channels, classes, p)
    raise ValueError(f"unknown architecture {architecture!r}; known: {', '.join(ARCHITECTURES)}")


class SceneEnsemble(nn.Module):
    """Fine and coarse sub-models per architecture, fused as fine x coarse-of-its-group.

    ``coarse_of[i]`` is the index of fine class i's coarse group. ``architectures`` may be a
    subset (the codec-augmentation experiment trains the fine FCNN alone: ``coarse=False``).
    """

    def __init__(
        self,
        fine_classes: list[str],
        coarse_classes: list[str],
        coarse_of: list[int],
        preset: str = "compact",
        in_channels: int = 3,
        architectures: tuple[str, ...] = ARCHITECTURES,
        coarse: bool = True,
    ):
        super().__init__()
        if len(coarse_of) != len(fine_classes):
            raise ValueError("coarse_of needs one coarse index per fine class")
        if coarse and any(not 0 <= c < len(coarse_classes) for c in coarse_of):
            raise ValueError("coarse_of refers to a coarse class that does not exist")
        self.fine_classes, self.coarse_classes = list(fine_classes), list(coarse_classes)
        self.preset, self.architectures, self.use_coarse = preset, tuple(architectures), coarse
        self.config = {
            "fine_classes": self.fine_classes,
            "coarse_classes": self.coarse_classes,
            "coarse_of": list(coarse_of),
            "preset": preset,
            "in_channels": in_channels,
            "architectures": list(architectures),
            "coarse": coarse,
        }  # the constructor arguments, as a checkpoint stores them
        self.register_buffer(
            "coarse_of", torch.tensor(coarse_of, dtype=torch.long), persistent=False
        )
        self.fine = nn.ModuleDict(
            {
                a: build_submodel(a, in_channels, len(fine_classes), preset)
                for a in self.architectures
            }
        )
        self.coarse = nn.ModuleDict(
            {
                a: build_submodel(a, in_channels, len(coarse_classes), preset)
                for a in self.architectures
            }
            if coarse
            else {}
        )

    def forward(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        """Logits of every sub-model (for training) and the fused probabilities."""
        out: dict[str, torch.Tensor] = {}
        for name, model in self.fine.items():
            out[f"fine/{name}"] = model(features)
        for name, model in self.coarse.items():
            out[f"coarse/{name}"] = model(features)
        fine_p = torch.stack([out[f"fine/{a}"].softmax(-1) for a in self.fine]).mean(0)
        out["fine_probs"] = fine_p
        if self.use_coarse:
            coarse_p = torch.stack([out[f"coarse/{a}"].softmax(-1) for a in self.coarse]).mean(0)
            out["coarse_probs"] = coarse_p
            out["scores"] = fuse(fine_p, coarse_p, self.coarse_of)
        else:
            out["scores"] = fine_p
        return out


def fuse(
    fine_probs: torch.Tensor, coarse_probs: torch.Tensor, coarse_of: torch.Tensor
) -> torch.Tensor:
    """Two-stage fusion: each fine probability times its coarse group's probability."""
    return fine_probs * coarse_probs[:, coarse_of]


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
