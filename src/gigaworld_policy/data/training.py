"""Training samples from a LeRobot dataset, in the batch format `GigaWorldPolicy.compute_loss` takes, made by the
dataset's `RobotProcessor` (processor.py), which `PolicyDataset` fits to the data (or is given, e.g. a checkpoint's).

For frame t of an episode of length L a sample holds:
    image          (3, H, W)     composite of the cameras at t, in [-1, 1]
    future_images  (F, 3, H, W)  composites at t + stride, t + 2*stride, ... (clamped to L-1)
    future_is_pad  (F,)          True where t + k*stride > L-1
    state          (S,)          normalised proprioception at t            (if the dataset has a state)
    actions        (H, A)        normalised actions t .. t+H-1 (clamped)   (if the dataset has actions)
    action_is_pad  (H,)          True where t + k > L-1
    embodiment     ()            the embodiment id of this dataset
    task           str           the instruction
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset

from ..config import PolicyConfig
from .composite import default_layout
from .lerobot import ACTION, IMAGE_PREFIX, STATE, LeRobotDataset
from .normalize import Normalizer, to_delta
from .processor import RobotProcessor
from .stats import feature_stats


@dataclass
class DataConfig:
    """How `PolicyDataset` fits a processor to a dataset; the fields left unset (empty, None) defer to a processor
    it is given, and a processor's choices cannot be overridden (a checkpoint preprocesses as it was trained)."""

    cameras: tuple[str, ...] = ()  # camera names in composite order; empty = all, in the dataset's order
    layout: str | None = None  # "t", "row" or "single"; None = "single" for one camera, "t" for three, else "row"
    fit: str | None = None  # "letterbox" or "stretch"; None = "letterbox"
    normalization: str = "quantile"
    delta_action_dims: tuple[int, ...] = ()  # action dims predicted relative to the current state
    embodiment: int = 0
    delta_stats_frames: int = 5000  # frames sampled to estimate the statistics of delta actions
    seed: int = 0


class PolicyDataset(Dataset):
    """Samples of `dataset` for embodiment `data.embodiment`, preprocessed by `self.processor` (a `RobotProcessor`).

    processor: how this robot's frames become model inputs, e.g. a checkpoint's, or another dataset's of the same
    robot. Its cameras, layout, fit, normalisers and delta dims are kept, and what `data` sets must agree with them;
    normalisers it lacks (actions, after video-only pre-training) are fitted to `dataset`. None: the processor is
    fitted to `dataset` as `data` says."""

    def __init__(self, dataset: LeRobotDataset, config: PolicyConfig, data: DataConfig | None = None,
                 processor: RobotProcessor | None = None):
        self.dataset, self.config = dataset, config
        self.data = data = data or DataConfig()
        self.has_state = STATE in dataset.columns
        self.has_actions = ACTION in dataset.columns
        if self.has_actions:
            short = [e for e in dataset.episodes if e.length < config.chunk_size]
            if short:
                raise ValueError(f"{dataset.root}: episode {short[0].index} has {short[0].length} frames, shorter "
                                 f"than the action chunk ({config.chunk_size}); drop it or lower chunk_size")
        self.episode_of = dataset.columns["episode_index"]
        self.episode_start = {e.index: e.start for e in dataset.episodes}
        self.episode_length = {e.index: e.length for e in dataset.episodes}
        self._check_dims()
        self.processor = self._fit_processor(processor)
        self.camera_keys = [dataset.camera_key(c) for c in self.processor.cameras]

    def _check_dims(self) -> None:
        if not 0 <= self.data.embodiment < len(self.config.embodiments):
            raise ValueError(f"embodiment id {self.data.embodiment} is not one of the policy's "
                             f"{[e.name for e in self.config.embodiments]}")
        spec = self.config.embodiments[self.data.embodiment]
        for key, name, expected in ((STATE, "state", spec.state_dim), (ACTION, "action", spec.action_dim)):
            if key in self.dataset.columns and self.dataset.columns[key].shape[1] != expected:
                raise ValueError(f"{self.dataset.root}: '{key}' has {self.dataset.columns[key].shape[1]} dims, "
                                 f"embodiment {spec.name!r} expects {name}_dim {expected}")

    def _fit_processor(self, given: RobotProcessor | None) -> RobotProcessor:
        data, spec = self.data, self.config.embodiments[self.data.embodiment]
        cameras, layout, fit = self._composition(given)
        if given is not None and given.action is not None:
            delta_dims = given.delta_action_dims
            if data.delta_action_dims and tuple(data.delta_action_dims) != delta_dims:
                raise ValueError(f"the processor is for delta action dims {list(delta_dims)}, the data config asks "
                                 f"for {list(data.delta_action_dims)}")
            if delta_dims and self.has_actions and not self.has_state:
                raise ValueError(f"{self.dataset.root} has no 'observation.state': the processor's delta actions "
                                 f"{list(delta_dims)} are relative to it")
        else:
            delta_dims = tuple(data.delta_action_dims)
            if delta_dims and not (self.has_state and self.has_actions):
                raise ValueError("delta actions need both 'observation.state' and 'action' in the dataset")
        for name, normalizer, expected in (("state", given and given.state, spec.state_dim),
                                           ("action", given and given.action, spec.action_dim)):
            if normalizer and normalizer.dim != expected:
                raise ValueError(f"the processor's {name} has {normalizer.dim} dims, embodiment {spec.name!r} "
                                 f"expects {name}_dim {expected}")
        state = given.state if given is not None and given.state is not None else (
            Normalizer.from_stats(self._stats(STATE), data.normalization, STATE) if self.has_state else None)
        action = given.action if given is not None and given.action is not None else (
            Normalizer.from_stats(self._action_stats(delta_dims), data.normalization, ACTION)
            if self.has_actions else None)
        sizes = given.camera_sizes if given is not None else tuple(self.dataset.camera_size(c) for c in cameras)
        return RobotProcessor(cameras, sizes, layout, fit, state, action, delta_dims)

    def _composition(self, given: RobotProcessor | None) -> tuple[tuple[str, ...], str, str]:
        """Cameras (names), layout and fit of the composite: the given processor's, else as `data` says."""
        if not self.dataset.camera_keys:
            raise ValueError(f"{self.dataset.root} has no camera (video or image) features")
        data = self.data
        asked = tuple(self.dataset.camera_key(c).removeprefix(IMAGE_PREFIX) for c in data.cameras)
        if given is None:
            cameras = asked or tuple(k.removeprefix(IMAGE_PREFIX) for k in self.dataset.camera_keys)
            return cameras, data.layout or default_layout(len(cameras)), data.fit or "letterbox"
        for field, wanted, kept in (("cameras", asked or None, given.cameras), ("layout", data.layout, given.layout),
                                    ("fit", data.fit, given.fit)):
            if wanted is not None and wanted != kept:
                raise ValueError(f"the processor composes the image with {field} {kept!r}, the data config asks for "
                                 f"{wanted!r}: leave data.{field} unset to keep the processor's")
        for camera in given.cameras:
            self.dataset.camera_key(camera)  # the processor's cameras must all be in this dataset
        return given.cameras, given.layout, given.fit

    def _stats(self, key: str) -> dict[str, np.ndarray]:
        """The dataset's statistics of `key`, computed from its values (all in memory) where meta/stats.json lacks
        what the normaliser needs: LeRobot's v2.1 -> v3.0 converter, for one, writes no quantiles."""
        stored = self.dataset.stats.get(key, {})
        wanted = {"min", "max", *(("q01", "q99") if self.data.normalization == "quantile" else ("mean", "std"))}
        if wanted <= stored.keys():
            size = self.dataset.columns[key].shape[1:]  # the feature's: stats copied from another robot differ
            wrong = {name: np.shape(stored[name]) for name in sorted(wanted)
                     if np.shape(stored[name]) != size or not np.isfinite(stored[name]).all()}
            if wrong:
                raise ValueError(f"{self.dataset.root}: meta/stats.json's {sorted(wrong)} of {key!r} must be finite "
                                 f"and of the feature's shape {size}, got shapes {list(wrong.values())}")
            return stored
        warnings.warn(f"{self.dataset.root}: meta/stats.json has no {sorted(wanted - stored.keys())} for {key!r}; "
                      f"computed from the data instead", stacklevel=4)
        return feature_stats(self.dataset.columns[key])

    def _action_stats(self, delta_dims: tuple[int, ...]) -> dict[str, np.ndarray]:
        if not delta_dims:
            return self._stats(ACTION)
        # Statistics of a_{t+k} - s_t over chunks starting at a random subset of frames.
        rng = np.random.default_rng(self.data.seed)
        frames = rng.choice(len(self.dataset.columns[ACTION]), min(self.data.delta_stats_frames, len(self)),
                            replace=False)
        chunks = torch.stack([self._raw_chunk(int(i))[0] for i in frames])
        state = torch.as_tensor(self.dataset.columns[STATE][frames])
        mask = torch.zeros(chunks.shape[-1], dtype=torch.bool)
        mask[list(delta_dims)] = True
        return feature_stats(to_delta(chunks, state, mask).reshape(-1, chunks.shape[-1]).numpy())

    def __len__(self) -> int:
        return self.dataset.num_frames

    def _offsets(self, index: int, steps: np.ndarray) -> tuple[np.ndarray, np.ndarray, int, int]:
        """Episode-local frame indices of index + steps clamped to the episode, their pad flags, episode, t."""
        episode = int(self.episode_of[index])
        start, length = self.episode_start[episode], self.episode_length[episode]
        local = index - start + steps
        return np.minimum(local, length - 1), local > length - 1, episode, index - start

    def _raw_chunk(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        local, is_pad, episode, _ = self._offsets(index, np.arange(self.config.chunk_size))
        actions = self.dataset.columns[ACTION][self.episode_start[episode] + local]
        return torch.as_tensor(actions), torch.as_tensor(is_pad)

    def _composites(self, episode: int, local: np.ndarray) -> torch.Tensor:
        """(T, 3, H, W) composites at episode-local frames `local`."""
        views = [self.dataset.frames(key, episode, local) for key in self.camera_keys]
        size = self.config.image_size
        return torch.stack([self.processor.composite([v[t] for v in views], size) for t in range(len(local))])

    def __getitem__(self, index: int) -> dict:
        return self.sample(index)

    def sample(self, index: int, images: bool = True) -> dict:
        """The training sample of frame `index`; images=False leaves out image/future_images (for precomputed
        latents), which skips all video decoding."""
        if not 0 <= index < len(self):
            raise IndexError(f"frame {index} is out of range (dataset has {len(self)} frames)")
        cfg = self.config
        future_steps = cfg.future_stride * np.arange(1, cfg.num_future_frames + 1)
        future_local, future_is_pad, episode, t = self._offsets(index, future_steps)
        sample = {
            "future_is_pad": torch.as_tensor(future_is_pad),
            "embodiment": torch.tensor(self.data.embodiment),
            "task": self.dataset.task_of(index),
        }
        if images:
            composites = self._composites(episode, np.concatenate([[t], future_local]))
            sample["image"], sample["future_images"] = composites[0], composites[1:]
        state = None
        if self.has_state:
            state = torch.as_tensor(self.dataset.columns[STATE][index])
            sample["state"] = self.processor.normalize_state(state)
        if self.has_actions:
            actions, action_is_pad = self._raw_chunk(index)
            sample["actions"] = self.processor.normalize_actions(actions, state)
            sample["action_is_pad"] = action_is_pad
        return sample
