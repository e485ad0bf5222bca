"""The pixel-patch codec: latents are the image itself, space-to-depth rearranged. No VAE, no weights.

Images in [-1, 1] (B, T, 3, H, W) become latents (B, 3*f*f, T, H/f, W/f); one latent frame per image.
It is the CPU default: cheap, exact to decode, and with the same latent channel count as Wan2.2's VAE at
f = 4 (48 channels).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor


class PixelCodec:
    temporal_factor = 1

    def __init__(self, spatial_factor: int):
        self.spatial_factor = spatial_factor

    def encode(self, frames: Tensor) -> Tensor:
        """frames (B, T, 3, H, W) in [-1, 1] -> latents (B, 3*f*f, T, H/f, W/f)."""
        latents = F.pixel_unshuffle(frames.flatten(0, 1), self.spatial_factor)
        return latents.unflatten(0, frames.shape[:2]).transpose(1, 2)

    def decode(self, latents: Tensor) -> Tensor:
        """latents (B, C, T, h, w) -> frames (B, T, 3, h*f, w*f), clamped to [-1, 1]."""
        frames = F.pixel_shuffle(latents.transpose(1, 2).flatten(0, 1), self.spatial_factor)
        return frames.unflatten(0, (latents.shape[0], latents.shape[2])).clamp(-1, 1)
