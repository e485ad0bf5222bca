"""Run a trained policy on robot observations, in robot units.

    predictor = Predictor.from_checkpoint("runs/mw/checkpoints/last")
    actions = predictor.predict(Observation({"corner": hwc_uint8, ...}, state, "open the drawer"))["actions"]
    # actions: (H, A) float32 in the robot's own units (Observation is in gigaworld_policy.envs.base)

The checkpoint's `normalization.json` says which cameras make the composite image (and in which layout), how to
normalise the state and how to un-normalise (and un-delta) the actions, per embodiment.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from .data.composite import composite, to_model_range
from .data.normalize import Normalizer, from_delta
from .encoders.frozen import load_codec, load_text_encoder
from .envs.base import Observation
from .model.policy import EMA_WEIGHTS_NAME, GigaWorldPolicy, check_temperature


def load_checkpoint(directory: str | os.PathLike, ema: bool = True, device: str = "cpu",
                    text_encoder: str | os.PathLike = "minilm",
                    vae: str | os.PathLike | None = None) -> GigaWorldPolicy:
    """A checkpoint folder ready to run: its EMA weights when it has them (and `ema`), with the frozen parts it runs
    with attached — `text_encoder` as `encoders.frozen.load_text_encoder` takes it, `vae` the Wan2.2 VAE folder of a
    policy whose codec is wan_vae."""
    if str(text_encoder) == "none":
        raise ValueError("observations carry the instruction as text: give the text encoder ('minilm' or a folder)")
    ema = ema and (Path(directory) / EMA_WEIGHTS_NAME).is_file()
    policy = GigaWorldPolicy.from_pretrained(directory, device=device, ema=ema)
    policy.text_encoder = load_text_encoder(text_encoder, policy.config, device)
    policy.codec = load_codec(policy.config, vae, device)
    return policy


class Predictor:
    def __init__(self, policy: GigaWorldPolicy, embodiment: str | None = None, num_steps: int | None = None,
                 temperature: float = 1.0):
        """temperature: of action sampling (see `GigaWorldPolicy.sample_actions`); 1 as trained, 0 deterministic."""
        check_temperature(temperature)
        self.policy = policy.eval()
        names = [e.name for e in policy.config.embodiments]
        self.embodiment = embodiment or next((n for n in names if n in policy.normalization), names[0])
        self.embodiment_id = policy.config.embodiment_index(self.embodiment)
        if self.embodiment not in policy.normalization:
            raise ValueError(f"the checkpoint has no normalisation for embodiment {self.embodiment!r} "
                             f"(it has {sorted(policy.normalization)}): train on data of that robot first")
        processing = policy.normalization[self.embodiment]
        self.cameras: list[str] = processing["cameras"]
        self.camera_sizes: list[tuple[int, int]] = [tuple(size) for size in processing["camera_sizes"]]  # (H, W)
        self.layout, self.fit = processing["layout"], processing["fit"]
        self.state_normalizer = Normalizer.from_dict(processing["state"]) if processing["state"] else None
        if not processing["action"]:
            raise ValueError("the checkpoint was trained without actions (video pre-training only)")
        self.action_normalizer = Normalizer.from_dict(processing["action"])
        self.delta_mask = torch.zeros(len(self.action_normalizer.offset), dtype=torch.bool)
        self.delta_mask[processing["delta_action_dims"]] = True
        self.num_steps, self.temperature = num_steps, temperature
        if policy.text_encoder is None:  # the default; a policy with another width needs its own attached
            policy.text_encoder = load_text_encoder("minilm", policy.config, policy.device)

    @property
    def state_dim(self) -> int:
        """Numbers in the state the policy reads (0: it was trained without one)."""
        return len(self.state_normalizer.offset) if self.state_normalizer is not None else 0

    @classmethod
    def from_checkpoint(cls, directory: str | os.PathLike, ema: bool = True, device: str = "cpu",
                        text_encoder: str | os.PathLike = "minilm", vae: str | os.PathLike | None = None,
                        **kwargs) -> Predictor:
        """A predictor of the checkpoint folder, loaded by `load_checkpoint`; kwargs go to the constructor."""
        return cls(load_checkpoint(directory, ema, device, text_encoder, vae), **kwargs)

    def batch(self, observation: Observation) -> dict:
        """The policy batch (B = 1) of one observation, with the state in robot units kept for un-delta."""
        missing = [c for c in self.cameras if c not in observation.images]
        if missing:
            raise ValueError(f"observation is missing camera(s) {missing}; the policy uses {self.cameras}")
        views = [to_model_range(torch.as_tensor(np.asarray(observation.images[c]))) for c in self.cameras]
        for camera, view in zip(self.cameras, views, strict=True):
            if view.ndim != 3 or view.shape[0] != 3:
                raise ValueError(f"image {camera!r} must be (H, W, 3) uint8, got {tuple(view.shape)}")
        batch = {
            "image": composite(views, self.layout, self.policy.config.image_size, self.fit)[None],
            "embodiment": torch.tensor([self.embodiment_id]),
            "task": [observation.task],
        }
        if self.state_normalizer is not None:
            if observation.state is None:
                raise ValueError("observation has no 'state'; the policy was trained with one")
            state = torch.as_tensor(np.asarray(observation.state, dtype=np.float32))
            expected = len(self.state_normalizer.offset)
            if state.shape != (expected,):
                raise ValueError(f"state has shape {tuple(state.shape)}, the policy expects ({expected},)")
            batch["state"] = self.state_normalizer.normalize(state)[None]
            batch["raw_state"] = state[None]
        return batch

    def composite_uint8(self, observation: Observation) -> np.ndarray:
        """The composite image the policy sees, (H, W, 3) uint8 (for visualisation)."""
        image = self.batch(observation)["image"][0]
        return ((image.permute(1, 2, 0) + 1) * 127.5).round().clamp(0, 255).byte().numpy()

    @torch.no_grad()
    def predict(self, observation: Observation, with_video: bool = False,
                generator: torch.Generator | None = None) -> dict[str, np.ndarray]:
        """-> {"actions": (H, A) robot units} and, with_video, {"video": (F, H, W, 3) uint8 predicted frames}."""
        return self.predict_batch(self.batch(observation), with_video, generator)

    @torch.no_grad()
    def predict_batch(self, batch: dict, with_video: bool = False,
                      generator: torch.Generator | None = None) -> dict[str, np.ndarray]:
        """`predict` of a batch made by `batch` (the policy server makes it before the request waits its turn)."""
        batch = dict(batch)
        raw_state = batch.pop("raw_state", None)
        normalized = self.policy.sample_actions(batch, self.num_steps, generator=generator,
                                                temperature=self.temperature)
        actions = self.action_normalizer.unnormalize(normalized[0, :, : len(self.action_normalizer.offset)].cpu())
        if self.delta_mask.any():
            actions = from_delta(actions[None], raw_state, self.delta_mask)[0]
        result = {"actions": actions.numpy().astype(np.float32)}
        if with_video:
            frames = self.policy.sample_video(batch, normalized, self.num_steps, generator=generator)[0].cpu()
            result["video"] = ((frames.permute(0, 2, 3, 1) + 1) * 127.5).round().clamp(0, 255).byte().numpy()
        return result
