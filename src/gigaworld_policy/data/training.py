"""Training samples from a LeRobot dataset, in the batch format `GigaWorldPolicy.compute_loss` takes.

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
from .composite import composite, default_layout, to_model_range
from .lerobot import LeRobotDataset
from .normalize import Normalizer, to_delta
from .stats import feature_stats

STATE, ACTION = "observation.state", "action"


@dataclass
class DataConfig:
    cameras: tuple[str, ...] = ()  # camera names in composite order; empty = all, in the dataset's order
    layout: str | None = None  # "t", "row" or "single"; None = "single" for one camera, "t" for three, else "row"
    fit: str = "letterbox"
    normalization: str = "quantile"
    delta_action_dims: tuple[int, ...] = ()  # action dims predicted relative to the current state
    embodiment: int = 0
    delta_stats_frames: int = 5000  # frames sampled to estimate the statistics of delta actions
    seed: int = 0


class PolicyDataset(Dataset):
    """normalization: a `normalization_state()` to reuse (e.g. a checkpoint's, or another dataset's of the same
    robot); parts it lacks (e.g. actions, after video-only pre-training) come from the statistics of `dataset`."""

    def __init__(self, dataset: LeRobotDataset, config: PolicyConfig, data: DataConfig | None = None,
                 normalization: dict | None = None):
        self.dataset, self.config = dataset, config
        self.data = data = data or DataConfig()
        self.cameras = self._cameras()
        self.layout = data.layout or default_layout(len(self.cameras))
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
        if data.delta_action_dims and not (self.has_state and self.has_actions):
            raise ValueError("delta actions need both 'observation.state' and 'action' in the dataset")
        self.delta_mask = torch.zeros(dataset.columns[ACTION].shape[1] if self.has_actions else 0, dtype=torch.bool)
        self.delta_mask[list(data.delta_action_dims)] = True
        self._check_dims()
        given = normalization or {}
        if given.get("action") and list(given["delta_action_dims"]) != list(data.delta_action_dims):
            raise ValueError(f"the normalisation is for delta action dims {given['delta_action_dims']}, this "
                             f"dataset uses {list(data.delta_action_dims)}")
        self.state_normalizer = self.action_normalizer = None
        if self.has_state:
            self.state_normalizer = (Normalizer.from_dict(given["state"]) if given.get("state")
                                     else Normalizer.from_stats(self._stats(STATE), data.normalization, STATE))
        if self.has_actions:
            self.action_normalizer = (Normalizer.from_dict(given["action"]) if given.get("action")
                                      else Normalizer.from_stats(self._action_stats(), data.normalization, ACTION))

    @property
    def embodiment_name(self) -> str:
        return self.config.embodiments[self.data.embodiment].name

    def _check_dims(self) -> None:
        if not 0 <= self.data.embodiment < len(self.config.embodiments):
            raise ValueError(f"embodiment id {self.data.embodiment} is not one of the policy's "
                             f"{[e.name for e in self.config.embodiments]}")
        spec = self.config.embodiments[self.data.embodiment]
        for key, name, expected in ((STATE, "state", spec.state_dim), (ACTION, "action", spec.action_dim)):
            if key in self.dataset.columns and self.dataset.columns[key].shape[1] != expected:
                raise ValueError(f"{self.dataset.root}: '{key}' has {self.dataset.columns[key].shape[1]} dims, "
                                 f"embodiment {spec.name!r} expects {name}_dim {expected}")

    def _cameras(self) -> list[str]:
        available = self.dataset.camera_keys
        if not available:
            raise ValueError(f"{self.dataset.root} has no camera (video or image) features")
        if not self.data.cameras:
            return available
        chosen = []
        for camera in self.data.cameras:
            key = camera if camera in available else f"observation.images.{camera}"
            if key not in available:
                raise ValueError(f"camera {camera!r} does not exist; this dataset has {available}")
            chosen.append(key)
        return chosen

    def _stats(self, key: str) -> dict[str, np.ndarray]:
        """The dataset's statistics of `key`, computed from its values (all in memory) where meta/stats.json lacks
        what the normaliser needs: LeRobot's v2.1 -> v3.0 converter, for one, writes no quantiles."""
        stored = self.dataset.stats.get(key, {})
        wanted = {"min", "max", *(("q01", "q99") if self.data.normalization == "quantile" else ("mean", "std"))}
        if wanted <= stored.keys():
            return stored
        warnings.warn(f"{self.dataset.root}: meta/stats.json has no {sorted(wanted - stored.keys())} for {key!r}; "
                      f"computed from the data instead", stacklevel=3)
        return feature_stats(self.dataset.columns[key])

    def _action_stats(self) -> dict[str, np.ndarray]:
        if not self.data.delta_action_dims:
            return self._stats(ACTION)
        # Statistics of a_{t+k} - s_t over chunks starting at a random subset of frames.
        rng = np.random.default_rng(self.data.seed)
        frames = rng.choice(len(self.dataset.columns[ACTION]), min(self.data.delta_stats_frames, len(self)),
                            replace=False)
        chunks = torch.stack([self._raw_chunk(int(i))[0] for i in frames])
        state = torch.as_tensor(self.dataset.columns[STATE][frames])
        return feature_stats(to_delta(chunks, state, self.delta_mask).reshape(-1, chunks.shape[-1]).numpy())

    def normalization_state(self) -> dict:
        """What a checkpoint needs to turn robot observations into model inputs and model actions back into
        robot units: normalisers, delta-action dims, and the cameras/layout of the composite image."""
        return {
            "state": self.state_normalizer.to_dict() if self.state_normalizer else None,
            "action": self.action_normalizer.to_dict() if self.action_normalizer else None,
            "delta_action_dims": list(self.data.delta_action_dims),
            "cameras": [c.removeprefix("observation.images.") for c in self.cameras],
            "camera_sizes": [list(self.dataset.camera_size(c)) for c in self.cameras],  # (H, W) recorded
            "layout": self.layout,
            "fit": self.data.fit,
        }

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
        views = [to_model_range(torch.from_numpy(self.dataset.frames(cam, episode, local))) for cam in self.cameras]
        return torch.stack([
            composite([v[t] for v in views], self.layout, self.config.image_size, self.data.fit)
            for t in range(len(local))
        ])

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
            sample["state"] = self.state_normalizer.normalize(state)
        if self.has_actions:
            actions, action_is_pad = self._raw_chunk(index)
            if self.data.delta_action_dims:
                actions = to_delta(actions, state, self.delta_mask)
            sample["actions"] = self.action_normalizer.normalize(actions)
            sample["action_is_pad"] = action_is_pad
        return sample
