"""What turns robot observations into model inputs, and model actions back into robot units, per embodiment.

A `RobotProcessor` is fitted once to a robot's training data (`PolicyDataset` builds it) and travels with the
weights as `processor.json`, so that training, open-loop evaluation and deployment all preprocess alike:

    observation: camera name -> (h, w, 3) uint8, state (S,) in robot units, instruction
        --preprocess-->          {"image": (1, 3, H, W) in [-1, 1], "state": (1, S) normalised, "embodiment": (1,),
                                  "task": [str], "raw_state": (1, S) robot units}
    actions (B, H, A') normalised (A' >= A: the policy pads to its widest robot)
        --unnormalize_actions--> (B, H, A) in robot units (deltas added back to the state)

processor.json (a policy folder's; `write_processors` / `read_processors`):

    {"version": 1,
     "embodiments": {"<embodiment name>": {
         "cameras": ["corner", ...],           composite order, names without 'observation.images.'
         "camera_sizes": [[H, W], ...],        as recorded (an environment renders at these sizes)
         "layout": "t", "fit": "letterbox",    see composite.py
         "state": {"offset": [...], "scale": [...], "clip": false} or null (no state),
         "action": {...} or null (trained without actions: video-only pre-training),
         "delta_action_dims": [...]}}}        action dims predicted relative to the current state

Checkpoints written before processor.json hold `normalization.json`: the same per-embodiment objects, without
the version and the "embodiments" level. `read_processors` converts them on load.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from ..config import read_json
from .composite import FITS, check_layout, composite, to_model_range
from .normalize import Normalizer, from_delta, to_delta

if TYPE_CHECKING:  # (envs imports data: a type only, no import at run time)
    from ..envs.base import Observation

PROCESSOR_NAME = "processor.json"
LEGACY_NAME = "normalization.json"  # what checkpoints held before processor.json
VERSION = 1
FIELDS = ("cameras", "camera_sizes", "layout", "fit", "state", "action", "delta_action_dims")


@dataclass(frozen=True)
class RobotProcessor:
    """One embodiment's pre- and post-processing. Checked on construction: a processor that exists is usable."""

    cameras: tuple[str, ...]  # camera names (without 'observation.images.'), in composite order
    camera_sizes: tuple[tuple[int, int], ...]  # (H, W) of each camera as recorded
    layout: str  # composite layout: "t", "row" or "single"
    fit: str  # how a view fills its cell: "letterbox" or "stretch"
    state: Normalizer | None  # None: the robot has no state
    action: Normalizer | None  # None: trained without actions (video-only pre-training)
    delta_action_dims: tuple[int, ...] = ()  # action dims predicted relative to the current state

    def __post_init__(self) -> None:
        if not self.cameras:
            raise ValueError("a processor needs at least one camera")
        if len(self.camera_sizes) != len(self.cameras):
            raise ValueError(f"{len(self.cameras)} cameras {list(self.cameras)} but {len(self.camera_sizes)} "
                             f"camera sizes")
        check_layout(self.layout, len(self.cameras))
        if self.fit not in FITS:
            raise ValueError(f"fit must be one of {FITS}, got {self.fit!r}")
        if self.delta_action_dims and self.state is None:
            raise ValueError("delta actions are relative to the state, and this processor has none")
        outside = [d for d in self.delta_action_dims if not 0 <= d < self.action_dim]
        if self.action is not None and outside:
            raise ValueError(f"delta action dims {outside} are not among the {self.action_dim} action dims")

    @property
    def state_dim(self) -> int:
        """Numbers in the state (0: none)."""
        return self.state.dim if self.state is not None else 0

    @property
    def action_dim(self) -> int:
        """Numbers in an action in robot units (0: trained without actions)."""
        return self.action.dim if self.action is not None else 0

    def _delta_mask(self) -> Tensor:
        mask = torch.zeros(self.action_dim, dtype=torch.bool)
        mask[list(self.delta_action_dims)] = True
        return mask

    # ---- robot -> model -----------------------------------------------------------------------------
    def composite(self, views: Sequence[np.ndarray | Tensor], size: tuple[int, int]) -> Tensor:
        """views: one (h, w, 3) uint8 frame per camera, in `cameras` order -> (3, H, W) composite in [-1, 1] of
        `size` (H, W), the policy's image size."""
        return composite([to_model_range(torch.as_tensor(view)) for view in views], self.layout, size, self.fit)

    def normalize_state(self, state: Tensor) -> Tensor:
        """state (..., S) in robot units -> (..., S) normalised."""
        return self.state.normalize(state)

    def normalize_actions(self, actions: Tensor, state: Tensor | None) -> Tensor:
        """actions (..., H, A) and state (..., S) in robot units -> (..., H, A) model units: the delta dims made
        relative to the state, then normalised."""
        if self.delta_action_dims:
            actions = to_delta(actions, state, self._delta_mask())
        return self.action.normalize(actions)

    def preprocess(self, observation: Observation, image_size: tuple[int, int], embodiment: int) -> dict:
        """The policy batch (B = 1) of one observation (see the module docstring), for a policy of `image_size`
        (H, W) whose embodiment id of this robot is `embodiment`. "raw_state" is what un-delta needs."""
        missing = [c for c in self.cameras if c not in observation.images]
        if missing:
            raise ValueError(f"observation is missing camera(s) {missing}; the policy uses {list(self.cameras)}")
        views = [np.asarray(observation.images[c]) for c in self.cameras]
        for camera, view in zip(self.cameras, views, strict=True):
            if view.ndim != 3 or view.shape[-1] != 3:
                raise ValueError(f"image {camera!r} must be (H, W, 3) uint8, got {tuple(view.shape)}")
        batch = {
            "image": self.composite(views, image_size)[None],
            "embodiment": torch.tensor([embodiment]),
            "task": [observation.task],
        }
        if self.state is not None:
            if observation.state is None:
                raise ValueError("observation has no 'state'; the policy was trained with one")
            state = torch.as_tensor(np.asarray(observation.state, dtype=np.float32))
            if state.shape != (self.state_dim,):
                raise ValueError(f"state has shape {tuple(state.shape)}, the policy expects ({self.state_dim},)")
            batch["state"] = self.normalize_state(state)[None]
            batch["raw_state"] = state[None]
        return batch

    # ---- model -> robot -----------------------------------------------------------------------------
    def unnormalize_actions(self, actions: Tensor, state: Tensor | None) -> Tensor:
        """actions (..., H, A') in model units (A' >= A: padding dims are dropped), state (..., S) in robot units
        -> (..., H, A) in robot units."""
        if self.action is None:
            raise ValueError("the checkpoint was trained without actions (video pre-training only)")
        actions = self.action.unnormalize(actions[..., : self.action_dim])
        if self.delta_action_dims:
            actions = from_delta(actions, state, self._delta_mask())
        return actions

    # ---- files ----------------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {
            "cameras": list(self.cameras),
            "camera_sizes": [list(size) for size in self.camera_sizes],
            "layout": self.layout,
            "fit": self.fit,
            "state": self.state.to_dict() if self.state is not None else None,
            "action": self.action.to_dict() if self.action is not None else None,
            "delta_action_dims": list(self.delta_action_dims),
        }

    @classmethod
    def from_dict(cls, data: dict) -> RobotProcessor:
        """The inverse of `to_dict`; a missing or unknown field is a ValueError that names it."""
        if not isinstance(data, dict):
            raise ValueError(f"a processor is an object of {list(FIELDS)}, got {type(data).__name__}")
        missing, unknown = [k for k in FIELDS if k not in data], [k for k in data if k not in FIELDS]
        if missing or unknown:
            wrong = [f"lacks {missing}"] * bool(missing) + [f"has unknown {unknown}"] * bool(unknown)
            raise ValueError(f"a processor has the fields {list(FIELDS)}; this one {' and '.join(wrong)}")
        return cls(
            cameras=tuple(str(c) for c in data["cameras"]),
            camera_sizes=tuple((int(h), int(w)) for h, w in data["camera_sizes"]),
            layout=data["layout"],
            fit=data["fit"],
            state=Normalizer.from_dict(data["state"]) if data["state"] else None,
            action=Normalizer.from_dict(data["action"]) if data["action"] else None,
            delta_action_dims=tuple(int(d) for d in data["delta_action_dims"]),
        )


def write_processors(folder: str | os.PathLike, processors: dict[str, RobotProcessor]) -> None:
    """Write `processor.json` (embodiment name -> processor) into `folder`."""
    document = {"version": VERSION, "embodiments": {name: p.to_dict() for name, p in processors.items()}}
    (Path(folder) / PROCESSOR_NAME).write_text(json.dumps(document, indent=2))


def read_processors(directory: str | os.PathLike) -> dict[str, RobotProcessor]:
    """The processors of a policy folder, embodiment name -> processor: its processor.json or, in a checkpoint
    written before there was one, its normalization.json, converted. Neither, or one that does not read as
    processors, is an error that names the file."""
    directory = Path(directory)
    path = directory / PROCESSOR_NAME
    if path.is_file():
        document = read_json(path)
        if not isinstance(document, dict) or not isinstance(document.get("embodiments"), dict):
            raise ValueError(f"{path} is not a processor file: it has no 'embodiments' object")
        if document.get("version") != VERSION:
            raise ValueError(f"{path} has version {document.get('version')!r}; this gigaworld-policy reads version "
                             f"{VERSION}: upgrade gigaworld-policy to load it")
        embodiments = document["embodiments"]
    elif (directory / LEGACY_NAME).is_file():
        path = directory / LEGACY_NAME
        embodiments = read_json(path)
        if not isinstance(embodiments, dict):
            raise ValueError(f"{path} is not an object of embodiment name -> normalisation")
        for name, old in embodiments.items():
            _check_legacy(path, name, old)
    else:
        raise FileNotFoundError(f"{directory} is not a policy checkpoint: {PROCESSOR_NAME} is missing")
    processors = {}
    for name, data in embodiments.items():
        try:
            processors[name] = RobotProcessor.from_dict(data)
        except (ValueError, KeyError, TypeError) as error:
            raise ValueError(f"{path}: embodiment {name!r}: {error}") from None
    return processors


def _check_legacy(path: Path, name: str, old: object) -> None:
    """normalization.json from before checkpoints recorded their cameras has only state, action and delta dims:
    how the views were composed is not in the checkpoint, so say what to add rather than guess."""
    lacking = [k for k in ("cameras", "camera_sizes", "layout", "fit") if isinstance(old, dict) and k not in old]
    if lacking:
        raise ValueError(
            f"{path}: embodiment {name!r} records no {lacking}: the checkpoint predates recording how camera views "
            f"were composed; add them as the training run had them, e.g. \"cameras\": [\"corner\", \"corner2\", "
            f"\"corner3\"], \"camera_sizes\": [[64, 64], [64, 64], [64, 64]], \"layout\": \"t\", \"fit\": "
            f"\"letterbox\" (the dataset's cameras in its order and 'single'/'t'/'row' for 1/3/other counts were the "
            f"defaults), and load it again")
