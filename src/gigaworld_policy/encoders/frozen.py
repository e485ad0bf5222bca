"""The frozen parts a policy runs with — its latent codec and its text encoder — loaded from folders the user names.

Checkpoints hold only trained weights, so every command that builds a policy (training, evaluation, serving) attaches
these the same way, here. Nothing is downloaded: a folder that is not there is an error.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..config import PolicyConfig
from .pixel import PixelCodec
from .text import TextEncoder
from .wan_vae import WanVAECodec


def load_text_encoder(choice: str | os.PathLike, config: PolicyConfig, device: str = "cpu") -> TextEncoder | None:
    """The text encoder `choice` names, checked against the policy's text width: "minilm" (384 wide, shipped with
    the package), "none" (the data carry `text_embeds`) or a umT5 folder such as Wan2.2's `text_encoder/`, its
    tokenizer in the folder or in a sibling `tokenizer/` (Wan2.2-Diffusers' layout)."""
    name = str(choice)
    if name == "none":
        return None
    if name == "minilm":
        encoder = TextEncoder.minilm(max_length=config.text_len, device=device)
    else:
        folder = Path(choice)
        if not folder.is_dir():
            raise FileNotFoundError(f"text encoder {name!r} is neither 'minilm', 'none' nor a folder")
        tokenizer = folder if (folder / "tokenizer_config.json").is_file() else folder.parent / "tokenizer"
        if not (tokenizer / "tokenizer_config.json").is_file():
            raise FileNotFoundError(f"no tokenizer for the umT5 folder {folder}: expected tokenizer_config.json in it "
                                    f"or in {tokenizer}")
        encoder = TextEncoder.umt5(folder, tokenizer, max_length=config.text_len, device=device)
    if encoder.dim != config.transformer.text_dim:
        raise ValueError(f"the text encoder {name!r} is {encoder.dim} wide, the policy's text_dim is "
                         f"{config.transformer.text_dim}")
    return encoder


def load_codec(config: PolicyConfig, vae: str | os.PathLike | None, device: str = "cpu") -> PixelCodec | WanVAECodec:
    """The codec the config names: the pixel codec (no weights), or the Wan2.2 VAE from folder `vae`."""
    if config.codec.kind != "wan_vae":
        if vae is not None:
            raise ValueError(f"a VAE folder was given, but this policy's codec is {config.codec.kind!r}, not wan_vae")
        return PixelCodec(config.codec.spatial_factor)
    if vae is None:
        raise ValueError("this policy encodes images with the Wan2.2 VAE: give its folder (--vae)")
    return WanVAECodec.from_pretrained(vae, device)
