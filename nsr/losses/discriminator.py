"""PatchGAN discriminator and hinge losses for the adversarial term (spec §2.9 "Adversarial").

The discriminator is the pix2pix / taming-transformers "NLayerDiscriminator": strided 4×4 convolutions doubling
the width up to 8·ndf, BatchNorm, LeakyReLU(0.2), and a 1-channel map of per-patch realness logits. With
n_layers = 3 its receptive field is 70×70 pixels, so it judges local texture rather than global shape. Inputs
must be at least 24 pixels on a side for three stride-2 layers to leave a non-empty map.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class NLayerDiscriminator(nn.Module):
    """images `(N, in_channels, H, W)` in [-1, 1] → logits `(N, 1, H', W')`."""

    def __init__(self, in_channels: int = 3, ndf: int = 64, n_layers: int = 3):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(in_channels, ndf, 4, stride=2, padding=1), nn.LeakyReLU(0.2, True)]
        width = ndf
        for n in range(1, n_layers + 1):
            out = ndf * min(2 ** n, 8)
            # the last hidden layer keeps the resolution (stride 1), widening the receptive field only
            stride = 2 if n < n_layers else 1
            layers += [nn.Conv2d(width, out, 4, stride=stride, padding=1, bias=False), nn.BatchNorm2d(out),
                       nn.LeakyReLU(0.2, True)]
            width = out
        layers.append(nn.Conv2d(width, 1, 4, stride=1, padding=1))
        self.main = nn.Sequential(*layers)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """DCGAN initialisation: conv weights N(0, 0.02), BatchNorm scales N(1, 0.02), biases 0."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, 0.0, 0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.normal_(m.weight, 1.0, 0.02)
                nn.init.zeros_(m.bias)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.main(images)


class PairedDiscriminator(nn.Module):
    """Scores a real and a rendered batch in one call, each with its own BatchNorm statistics (as in taming).

    One module call per discriminator step, so a DistributedDataParallel wrapper sees one forward per backward.
    """

    def __init__(self, discriminator: nn.Module):
        super().__init__()
        self.discriminator = discriminator

    def forward(self, real: torch.Tensor, fake: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.discriminator(real), self.discriminator(fake)


def hinge_discriminator_loss(logits_real: torch.Tensor, logits_fake: torch.Tensor) -> torch.Tensor:
    """½·(mean relu(1 − D(real)) + mean relu(1 + D(fake)))."""
    return 0.5 * (F.relu(1.0 - logits_real).mean() + F.relu(1.0 + logits_fake).mean())


def generator_adversarial_loss(logits_fake: torch.Tensor) -> torch.Tensor:
    """−mean D(fake): the generator pushes the discriminator's logits on its renders up."""
    return -logits_fake.mean()
