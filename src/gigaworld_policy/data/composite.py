"""Merge camera views into one composite image of the model's input size.

Layouts (output (3, H, W)):
    "t"       first view on top at full width (H/2 tall), the next two side by side below, as in the paper
    "row"     all views side by side, each W/n wide
    "single"  one view fills the image
Each view is fitted into its cell by `fit`: "letterbox" keeps its aspect ratio and pads with black,
"stretch" resizes to the cell exactly.
"""

from __future__ import annotations

from itertools import pairwise

import numpy as np
import torch.nn.functional as F
from torch import Tensor

LAYOUTS = {"t": 3, "row": None, "single": 1}
FITS = ("letterbox", "stretch")


def check_layout(layout: str, num_views: int) -> None:
    """Refuse a layout that does not exist or does not take `num_views` views."""
    if layout not in LAYOUTS:
        raise ValueError(f"unknown composite layout {layout!r}; choose one of {sorted(LAYOUTS)}")
    expected = LAYOUTS[layout]
    if expected is not None and num_views != expected:
        raise ValueError(f"layout {layout!r} takes {expected} camera view(s), got {num_views}")


def layout_cells(layout: str, num_views: int, height: int, width: int) -> list[tuple[int, int, int, int]]:
    """Cells (top, left, cell height, cell width) of each view."""
    check_layout(layout, num_views)
    if layout == "single":
        return [(0, 0, height, width)]
    if layout == "t":
        top, half = height // 2, width // 2
        return [(0, 0, top, width), (top, 0, height - top, half), (top, half, height - top, width - half)]
    edges = [round(i * width / num_views) for i in range(num_views + 1)]
    return [(0, left, height, right - left) for left, right in pairwise(edges)]


def _fit(view: Tensor, height: int, width: int, fit: str) -> Tensor:
    """view (3, h, w) float -> (3, height, width)."""
    h, w = view.shape[-2:]
    if fit == "stretch" or (h * width == w * height):
        return F.interpolate(view[None], size=(height, width), mode="bilinear", antialias=True,
                             align_corners=False)[0]
    if fit not in FITS:
        raise ValueError(f"fit must be one of {FITS}, got {fit!r}")
    scale = min(height / h, width / w)
    new_h, new_w = max(1, round(h * scale)), max(1, round(w * scale))
    resized = F.interpolate(view[None], size=(new_h, new_w), mode="bilinear", antialias=True, align_corners=False)[0]
    out = view.new_full((view.shape[0], height, width), -1.0)  # black in [-1, 1]
    top, left = (height - new_h) // 2, (width - new_w) // 2
    out[:, top : top + new_h, left : left + new_w] = resized
    return out


def default_layout(num_views: int) -> str:
    """The layout a composite of `num_views` cameras gets when none is chosen."""
    return {1: "single", 3: "t"}.get(num_views, "row")


def composite(views: list[Tensor], layout: str, size: tuple[int, int], fit: str = "letterbox") -> Tensor:
    """views: list of (3, h, w) float images in [-1, 1] (sizes may differ) -> (3, H, W) composite."""
    height, width = size
    out = views[0].new_full((3, height, width), -1.0)
    for view, (top, left, cell_h, cell_w) in zip(views, layout_cells(layout, len(views), height, width),
                                                  strict=True):
        out[:, top : top + cell_h, left : left + cell_w] = _fit(view, cell_h, cell_w, fit)
    return out


def to_model_range(frames: Tensor) -> Tensor:
    """uint8 (..., H, W, 3) -> float (..., 3, H, W) in [-1, 1]."""
    return frames.movedim(-1, -3).float() / 127.5 - 1.0


def to_uint8(images: Tensor) -> np.ndarray:
    """float (..., 3, H, W) in [-1, 1] -> uint8 (..., H, W, 3), the inverse of `to_model_range` (values outside
    [-1, 1], as a model's predicted frames have, saturate)."""
    return ((images.detach().cpu().movedim(-3, -1) + 1) * 127.5).round().clamp(0, 255).byte().numpy()
