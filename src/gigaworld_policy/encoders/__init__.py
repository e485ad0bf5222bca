"""Latent codecs (images <-> latents)."""

from .pixel import PixelCodec

__all__ = ["PixelCodec"]
