"""The Wan2.2 VAE as a latent codec (diffusers' `AutoencoderKLWan`, loaded from a local folder).

The current frame and the sparse future frames are encoded together as one short clip, as the authors do: the VAE
is causal in time, so the first frame gets a latent frame of its own (it never sees the future) and every 4
following frames share one. Latents are normalised with the VAE config's `latents_mean` / `latents_std`.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import Tensor

from ..extras import require

# The architecture of Wan2.2-TI2V-5B's VAE (diffusers' AutoencoderKLWan arguments), without its statistics.
WAN22_VAE_ARCHITECTURE = {
    "base_dim": 160, "decoder_base_dim": 256, "z_dim": 48, "dim_mult": [1, 2, 4, 4], "num_res_blocks": 2,
    "temperal_downsample": [False, True, True], "is_residual": True, "in_channels": 12, "out_channels": 12,
    "patch_size": 2, "scale_factor_spatial": 16, "scale_factor_temporal": 4,
}


class WanVAECodec:
    def __init__(self, vae):
        self.vae = vae.eval().requires_grad_(False)
        config = vae.config
        shape = (1, config.z_dim, 1, 1, 1)
        self.mean = torch.tensor(config.latents_mean, dtype=torch.float32).reshape(shape)
        self.std = torch.tensor(config.latents_std, dtype=torch.float32).reshape(shape)
        self.spatial_factor = int(config.scale_factor_spatial)
        self.temporal_factor = int(config.scale_factor_temporal)
        self.latent_channels = int(config.z_dim)

    @classmethod
    def from_pretrained(cls, folder: str | os.PathLike, device: str = "cpu",
                        dtype: torch.dtype = torch.float32) -> WanVAECodec:
        """A diffusers VAE folder, e.g. the `vae` folder of Wan2.2-TI2V-5B-Diffusers on your disk."""
        AutoencoderKLWan = require("diffusers", "the Wan2.2 VAE").AutoencoderKLWan

        folder = Path(folder)
        if not (folder / "config.json").is_file():
            raise FileNotFoundError(f"{folder} is not a diffusers VAE folder: config.json is missing")
        return cls(AutoencoderKLWan.from_pretrained(str(folder), torch_dtype=dtype, local_files_only=True).to(device))

    @classmethod
    def random_wan22(cls, device: str = "cpu", dtype: torch.dtype = torch.float32) -> WanVAECodec:
        """Wan2.2's VAE architecture with random weights: for timing and shape checks, never for training."""
        AutoencoderKLWan = require("diffusers", "the Wan2.2 VAE").AutoencoderKLWan
        z = WAN22_VAE_ARCHITECTURE["z_dim"]
        with torch.device("meta"):
            vae = AutoencoderKLWan(**WAN22_VAE_ARCHITECTURE, latents_mean=[0.0] * z, latents_std=[1.0] * z)
        vae = vae.to_empty(device=device)
        for parameter in vae.parameters():
            torch.nn.init.normal_(parameter, std=0.02)
        return cls(vae.to(dtype))

    @torch.no_grad()
    def encode(self, frames: Tensor) -> Tensor:
        """frames (B, 1 + 4k, 3, H, W) in [-1, 1] -> normalised latents (B, C, 1 + k, H/16, W/16)."""
        if (frames.shape[1] - 1) % self.temporal_factor:
            raise ValueError(f"the Wan VAE encodes 1 + {self.temporal_factor}k frames, got {frames.shape[1]}")
        parameter = next(self.vae.parameters())
        clip = frames.transpose(1, 2).to(parameter.device, parameter.dtype)
        latents = self.vae.encode(clip).latent_dist.mode().float()
        return ((latents - self.mean.to(latents.device)) / self.std.to(latents.device)).to(frames.dtype)

    @torch.no_grad()
    def decode(self, latents: Tensor) -> Tensor:
        """latents (B, C, 1 + k, h, w), first latent frame = the current frame -> frames (B, 1 + 4k, 3, H, W)."""
        parameter = next(self.vae.parameters())
        z = latents.float() * self.std.to(latents.device) + self.mean.to(latents.device)
        video = self.vae.decode(z.to(parameter.device, parameter.dtype)).sample
        return video.float().clamp(-1, 1).transpose(1, 2).to(latents.dtype)
