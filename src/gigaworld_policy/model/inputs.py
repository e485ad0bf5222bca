"""Checking and padding a batch before it reaches the network.

A batch is a dict (see `GigaWorldPolicy.example_batch`):

    image          (B, 3, H, W)     current composite image in [-1, 1]
    latents        (B, C, 1+F', h, w) optional instead of image/future_images: precomputed codec latents
                                    (first latent frame = the current image)
    future_images  (B, F, 3, H, W)  optional: sparse future frames (video loss / video targets)
    future_is_pad  (B, F) bool      optional: future frames past the episode end
    state          (B, S)           optional: proprioception, S <= max_state_dim
    actions        (B, H, A)        optional: normalised action chunk, A <= max_action_dim
    action_is_pad  (B, H) bool      optional: steps past the episode end
    embodiment     (B,) long        optional when the policy knows a single embodiment
    text_embeds    (B, L, text_dim) + text_mask (B, L) bool, or task: list of B strings with a text encoder

Every violation raises ValueError naming the key, what was expected and what was given.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from ..config import PolicyConfig

TextEncoderFn = Callable[[list[str]], tuple[Tensor, Tensor]]  # tasks -> (B, L, text_dim), (B, L) bool


@dataclass
class PolicyInputs:
    image: Tensor | None  # (B, 3, H, W); None when precomputed latents are given
    embodiment: Tensor  # (B,) long
    text_embeds: Tensor  # (B, L, text_dim)
    text_mask: Tensor | None  # (B, L) bool
    state: Tensor | None  # (B, max_state_dim), zero beyond each embodiment's state_dim
    future_images: Tensor | None  # (B, F, 3, H, W)
    future_is_pad: Tensor  # (B, F) bool
    actions: Tensor | None  # (B, H, max_action_dim), zero beyond each embodiment's action_dim
    action_is_pad: Tensor  # (B, H) bool
    action_dim_mask: Tensor  # (B, max_action_dim) bool: dims that exist for each sample's embodiment
    latents: Tensor | None = None  # (B, C, 1 or 1+F', h, w) precomputed codec latents

    @property
    def batch_size(self) -> int:
        return self.embodiment.shape[0]

    @property
    def has_future(self) -> bool:
        return self.future_images is not None or (self.latents is not None and self.latents.shape[2] > 1)


def _shape_error(key: str, expected: str, given: Tensor) -> ValueError:
    return ValueError(f"'{key}' must have shape {expected}, got {tuple(given.shape)}")


def _tensor(batch: dict[str, Any], key: str, device, dtype=None) -> Tensor:
    value = batch[key]
    if not isinstance(value, Tensor):
        raise ValueError(f"'{key}' must be a torch.Tensor, got {type(value).__name__}")
    if dtype is not None and value.is_floating_point():
        value = value.to(dtype)
    value = value.to(device)
    if value.is_floating_point() and not torch.isfinite(value).all():
        raise ValueError(f"'{key}' contains NaN or infinite values")
    return value


def _check_image_range(key: str, x: Tensor) -> None:
    if not x.is_floating_point():
        raise ValueError(f"'{key}' must be a float tensor in [-1, 1], got dtype {x.dtype}")
    lo, hi = float(x.min()), float(x.max())
    if lo < -1.001 or hi > 1.001:
        raise ValueError(f"'{key}' must be in [-1, 1], got values in [{lo:.3g}, {hi:.3g}]")


def _pad_last(x: Tensor, size: int) -> Tensor:
    return F.pad(x, (0, size - x.shape[-1]))


def prepare_inputs(
    batch: dict[str, Any], config: PolicyConfig, device, dtype, text_encoder: TextEncoderFn | None = None
) -> PolicyInputs:
    """Validate `batch` against `config`, move it to device/dtype, and pad state/actions to the max dims."""
    height, width = config.image_size
    image = latents = None
    if batch.get("latents") is not None:
        latents = _tensor(batch, "latents", device, dtype)
        c, (h, w), frames = config.codec.latent_channels, config.latent_size, 1 + config.num_future_latent_frames
        if latents.ndim != 5 or latents.shape[1] != c or tuple(latents.shape[3:]) != (h, w) or (
                latents.shape[2] not in (1, frames)):
            raise _shape_error("latents", f"(B, {c}, 1 or {frames}, {h}, {w})", latents)
        b = latents.shape[0]
    elif batch.get("image") is not None:
        image = _tensor(batch, "image", device, dtype)
        if image.ndim != 4 or tuple(image.shape[1:]) != (3, height, width):
            raise _shape_error("image", f"(B, 3, {height}, {width}) (config.image_size)", image)
        _check_image_range("image", image)
        b = image.shape[0]
    else:
        raise ValueError(f"batch needs 'image' (B, 3, H, W) or 'latents'; it has keys {sorted(batch)}")

    num_embodiments = len(config.embodiments)
    if "embodiment" in batch:
        embodiment = _tensor(batch, "embodiment", device).long().reshape(-1)
        if embodiment.shape[0] != b:
            raise _shape_error("embodiment", f"({b},)", embodiment)
        bad = embodiment[(embodiment < 0) | (embodiment >= num_embodiments)]
        if bad.numel():
            raise ValueError(
                f"unknown embodiment id {int(bad[0])}; expected 0..{num_embodiments - 1} "
                f"({[e.name for e in config.embodiments]})"
            )
    elif num_embodiments == 1:
        embodiment = torch.zeros(b, dtype=torch.long, device=device)
    else:
        raise ValueError(f"batch needs 'embodiment' (B,): this policy knows {num_embodiments} embodiments")

    state_dims = torch.tensor([e.state_dim for e in config.embodiments], device=device)[embodiment]
    action_dims = torch.tensor([e.action_dim for e in config.embodiments], device=device)[embodiment]

    state = None
    if batch.get("state") is not None:
        state = _tensor(batch, "state", device, dtype)
        if state.ndim != 2 or state.shape[0] != b or state.shape[1] > config.max_state_dim:
            raise _shape_error("state", f"({b}, S) with S <= max_state_dim {config.max_state_dim}", state)
        state = _pad_last(state, config.max_state_dim)
        state = state * (torch.arange(config.max_state_dim, device=device) < state_dims[:, None])

    action_dim_mask = torch.arange(config.max_action_dim, device=device) < action_dims[:, None]
    actions = None
    action_is_pad = torch.zeros(b, config.chunk_size, dtype=torch.bool, device=device)
    if batch.get("actions") is not None:
        actions = _tensor(batch, "actions", device, dtype)
        if (
            actions.ndim != 3
            or actions.shape[:2] != (b, config.chunk_size)
            or actions.shape[2] > config.max_action_dim
        ):
            raise _shape_error(
                "actions", f"({b}, {config.chunk_size}, A) with A <= max_action_dim {config.max_action_dim}", actions
            )
        actions = _pad_last(actions, config.max_action_dim) * action_dim_mask[:, None, :]
        if batch.get("action_is_pad") is not None:
            action_is_pad = _tensor(batch, "action_is_pad", device).bool()
            if action_is_pad.shape != (b, config.chunk_size):
                raise _shape_error("action_is_pad", f"({b}, {config.chunk_size})", action_is_pad)

    num_future = config.num_future_frames
    future_images = None
    future_is_pad = torch.zeros(b, num_future, dtype=torch.bool, device=device)
    if batch.get("future_images") is not None and latents is None:
        future_images = _tensor(batch, "future_images", device, dtype)
        if future_images.shape != (b, num_future, 3, height, width):
            raise _shape_error("future_images", f"({b}, {num_future}, 3, {height}, {width})", future_images)
        _check_image_range("future_images", future_images)
    if batch.get("future_is_pad") is not None:
        future_is_pad = _tensor(batch, "future_is_pad", device).bool()
        if future_is_pad.shape != (b, num_future):
            raise _shape_error("future_is_pad", f"({b}, {num_future})", future_is_pad)

    text_embeds, text_mask = _text(batch, config, device, dtype, text_encoder, b)
    return PolicyInputs(
        image, embodiment, text_embeds, text_mask, state, future_images, future_is_pad, actions, action_is_pad,
        action_dim_mask, latents,
    )


def _text(batch, config: PolicyConfig, device, dtype, text_encoder: TextEncoderFn | None, b: int):
    if batch.get("text_embeds") is None:
        if batch.get("task") is None:
            raise ValueError("batch needs the instruction: 'text_embeds' (B, L, text_dim) or 'task' (B strings)")
        if text_encoder is None:
            raise ValueError(
                "batch has 'task' strings but the policy has no text encoder: attach one (policy.text_encoder) "
                "or pass precomputed 'text_embeds'"
            )
        tasks = list(batch["task"])
        if len(tasks) != b:
            raise ValueError(f"'task' must hold {b} strings (one per sample), got {len(tasks)}")
        text_embeds, text_mask = text_encoder(tasks)
        batch = {"text_embeds": text_embeds, "text_mask": text_mask}
    text_dim = config.transformer.text_dim
    text_embeds = _tensor(batch, "text_embeds", device, dtype)
    if text_embeds.ndim != 3 or text_embeds.shape[0] != b or text_embeds.shape[2] != text_dim:
        raise _shape_error("text_embeds", f"({b}, L, {text_dim})", text_embeds)
    text_mask = None
    if batch.get("text_mask") is not None:
        text_mask = _tensor(batch, "text_mask", device).bool()
        if text_mask.shape != text_embeds.shape[:2]:
            raise _shape_error("text_mask", str(tuple(text_embeds.shape[:2])), text_mask)
        if not text_mask.any(dim=1).all():
            raise ValueError("'text_mask' must mark at least one valid token in every sample")
    return text_embeds, text_mask
