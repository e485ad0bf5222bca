"""Latent codecs (images <-> latents) and frozen text encoders (instructions -> token embeddings)."""

from .pixel import PixelCodec
from .wan_vae import WanVAECodec

__all__ = ["PixelCodec", "WanVAECodec"]
