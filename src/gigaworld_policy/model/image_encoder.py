"""A small convolutional image encoder: the observation encoder of the standard baseline.

Diffusion Policy and many VLAs see the camera through a small CNN instead of a video model's latent patches. This
one (stride-2 stages of conv + GroupNorm + SiLU, `PolicyConfig.cnn_widths`, then average pooling to the DiT's
token grid and a 1x1 projection) gives the same number of observation tokens as the patch path, so the rest of the
network, the mask and the RoPE positions are unchanged.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


class ConvImageEncoder(nn.Module):
    def __init__(self, dim: int, grid: tuple[int, int], widths: tuple[int, ...]):
        super().__init__()
        self.grid = grid
        layers: list[nn.Module] = []
        channels = 3
        for width in widths:
            layers += [nn.Conv2d(channels, width, 3, stride=2, padding=1), nn.GroupNorm(8, width), nn.SiLU(),
                       nn.Conv2d(width, width, 3, padding=1), nn.GroupNorm(8, width), nn.SiLU()]
            channels = width
        self.features = nn.Sequential(*layers)
        self.project = nn.Conv2d(channels, dim, 1)

    def forward(self, image: Tensor) -> Tensor:
        """image (B, 3, H, W) in [-1, 1] -> tokens (B, rows*cols, D), row-major on the token grid."""
        features = F.adaptive_avg_pool2d(self.features(image), self.grid)
        return self.project(features).flatten(2).transpose(1, 2)
