"""Evaluation. Open loop: predicted action chunks and future frames against held-out ground truth."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from .model.policy import GigaWorldPolicy


@torch.no_grad()
def open_loop(policy: GigaWorldPolicy, batch: dict, num_steps: int | None = None,
              generator: torch.Generator | None = None) -> tuple[dict[str, float], Tensor | None]:
    """Metrics on one batch of held-out samples, in normalised units:
    action_mse (and action_mse_dim<i>) over valid steps and dims, video_mse over valid future frames (pixels in
    [-1, 1], video decoded given the true actions). Returns the metrics and the predicted frames (B, F, 3, H, W)."""
    metrics: dict[str, float] = {}
    predicted = None
    if batch.get("actions") is not None:
        actions = policy.sample_actions(batch, num_steps, generator=generator)
        target = batch["actions"][..., : actions.shape[-1]].to(actions)
        valid = (~batch["action_is_pad"]).to(actions.device)[:, :, None].expand_as(actions).float()
        dims = torch.tensor([policy.config.embodiments[int(e)].action_dim for e in batch["embodiment"]])
        valid = valid * (torch.arange(actions.shape[-1]) < dims[:, None])[:, None, :].to(valid)
        error = (actions - target) ** 2 * valid
        per_dim = error.sum(dim=(0, 1)) / valid.sum(dim=(0, 1)).clamp(min=1)
        metrics["action_mse"] = float(error.sum() / valid.sum().clamp(min=1))
        metrics.update({f"action_mse_dim{i}": float(v) for i, v in enumerate(per_dim)})
        if batch.get("future_images") is not None:
            predicted = policy.sample_video(batch, batch["actions"], num_steps, generator=generator).cpu()
            frame_error = ((predicted - batch["future_images"]) ** 2).mean(dim=(2, 3, 4))
            valid_frames = ~batch["future_is_pad"]
            metrics["video_mse"] = float((frame_error * valid_frames).sum() / valid_frames.sum().clamp(min=1))
    return metrics, predicted


def save_future_comparison(path: str | Path, true_frames: Tensor, predicted: Tensor, max_rows: int = 4) -> None:
    """PNG grid: one row per sample, the true future frames then the predicted ones. Frames (B, F, 3, H, W)."""
    from PIL import Image

    rows = []
    for true, pred in zip(true_frames[:max_rows], predicted[:max_rows], strict=True):
        frames = torch.cat([true, pred])  # (2F, 3, H, W)
        rows.append(torch.cat(list(frames), dim=2))  # (3, H, 2F*W)
    grid = torch.cat(rows, dim=1)
    pixels = ((grid.permute(1, 2, 0).clamp(-1, 1) + 1) * 127.5).round().byte().numpy()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.png")
    Image.fromarray(np.ascontiguousarray(pixels)).save(tmp)
    tmp.replace(path)
