"""Latent codecs (images <-> latents) and frozen text encoders (instructions -> token embeddings)."""

from .pixel import PixelCodec

__all__ = ["PixelCodec"]
