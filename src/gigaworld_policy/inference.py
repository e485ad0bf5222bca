"""Run a trained policy on robot observations, in robot units.

    predictor = Predictor.from_checkpoint("runs/mw/checkpoints/last")
    actions = predictor.predict(Observation({"corner": hwc_uint8, ...}, state, "open the drawer"))["actions"]
    # actions: (H, A) float32 in the robot's own units (Observation is in gigaworld_policy.envs.base)

The checkpoint's processor (`processor.json`, a `RobotProcessor` per embodiment: data/processor.py) says which cameras
make the composite image (and in which layout), how to normalise the state and how to un-normalise (and un-delta)
the actions.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from .data.composite import to_uint8
from .data.processor import RobotProcessor
from .encoders.frozen import load_codec, load_text_encoder
from .envs.base import Observation
from .model.policy import EMA_WEIGHTS_NAME, GigaWorldPolicy, check_temperature


def load_checkpoint(directory: str | os.PathLike, ema: bool = True, device: str = "cpu",
                    text_encoder: str | os.PathLike = "minilm",
                    vae: str | os.PathLike | None = None,
                    lora_base: str | os.PathLike | None = None) -> GigaWorldPolicy:
    """A checkpoint folder ready to run: its EMA weights when it has them (and `ema`), with the frozen parts it runs
    with attached — `text_encoder` as `encoders.frozen.load_text_encoder` takes it, `vae` the Wan2.2 VAE folder of a
    policy whose codec is wan_vae. A LoRA checkpoint is merged into its base weights (`lora_base`, default the folder
    it records)."""
    if str(text_encoder) == "none":
        raise ValueError("observations carry the instruction as text: give the text encoder ('minilm' or a folder)")
    ema = ema and (Path(directory) / EMA_WEIGHTS_NAME).is_file()
    policy = GigaWorldPolicy.from_pretrained(directory, device=device, ema=ema, lora_base=lora_base)
    policy.text_encoder = load_text_encoder(text_encoder, policy.config, device)
    policy.codec = load_codec(policy.config, vae, device)
    return policy


class ObservationOutOfRange(ValueError):
    """An observation that passed the checks but whose actions come out non-finite (e.g. a state far outside the
    training data's range overflows the network): nothing is returned for the robot to execute."""


class Predictor:
    def __init__(self, policy: GigaWorldPolicy, embodiment: str | None = None, num_steps: int | None = None,
                 temperature: float = 1.0):
        """temperature: of action sampling (see `GigaWorldPolicy.sample_actions`); 1 as trained, 0 deterministic."""
        check_temperature(temperature)
        self.policy = policy.eval()
        names = [e.name for e in policy.config.embodiments]
        self.embodiment = embodiment or next((n for n in names if n in policy.processors), names[0])
        self.embodiment_id = policy.config.embodiment_index(self.embodiment)
        if self.embodiment not in policy.processors:
            raise ValueError(f"the checkpoint has no processor for embodiment {self.embodiment!r} "
                             f"(it has {sorted(policy.processors)}): train on data of that robot first")
        self.processor: RobotProcessor = policy.processors[self.embodiment]
        if self.processor.action is None:
            raise ValueError("the checkpoint was trained without actions (video pre-training only)")
        self.num_steps, self.temperature = num_steps, temperature
        if policy.text_encoder is None:  # the default; a policy with another width needs its own attached
            policy.text_encoder = load_text_encoder("minilm", policy.config, policy.device)

    @property
    def cameras(self) -> list[str]:
        """The cameras an observation must have, in composite order."""
        return list(self.processor.cameras)

    @property
    def camera_sizes(self) -> list[tuple[int, int]]:
        """(H, W) of each camera as the training data recorded it."""
        return list(self.processor.camera_sizes)

    @property
    def state_dim(self) -> int:
        """Numbers in the state the policy reads (0: it was trained without one)."""
        return self.processor.state_dim

    @property
    def action_dim(self) -> int:
        """Numbers in an action, in robot units."""
        return self.processor.action_dim

    @property
    def max_action_prefix(self) -> int:
        """Longest committed action prefix `predict` continues (0: the policy was not trained for real-time
        chunking, `action_prefix_prob` 0)."""
        config = self.policy.config
        return config.action_prefix_limit if config.action_prefix_prob > 0 else 0

    @classmethod
    def from_checkpoint(cls, directory: str | os.PathLike, ema: bool = True, device: str = "cpu",
                        text_encoder: str | os.PathLike = "minilm", vae: str | os.PathLike | None = None,
                        **kwargs) -> Predictor:
        """A predictor of the checkpoint folder, loaded by `load_checkpoint`; kwargs go to the constructor."""
        return cls(load_checkpoint(directory, ema, device, text_encoder, vae), **kwargs)

    def batch(self, observation: Observation) -> dict:
        """The policy batch (B = 1) of one observation, with the state in robot units kept for un-delta (see
        `RobotProcessor.preprocess`)."""
        return self.processor.preprocess(observation, self.policy.config.image_size, self.embodiment_id)

    def composite_uint8(self, observation: Observation) -> np.ndarray:
        """The composite image the policy sees, (H, W, 3) uint8 (for visualisation)."""
        return to_uint8(self.batch(observation)["image"][0])

    @torch.no_grad()
    def predict(self, observation: Observation, with_video: bool = False, generator: torch.Generator | None = None,
                action_prefix: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """-> {"actions": (H, A) robot units} and, with_video, {"video": (F, H, W, 3) uint8 predicted frames}.
        action_prefix (d, A) robot units, d <= `max_action_prefix`: actions executed while this is computed (real-time
        chunking); the returned chunk starts with them and continues them."""
        return self.predict_batch(self.batch(observation), with_video, generator, action_prefix)

    @torch.no_grad()
    def predict_batch(self, batch: dict, with_video: bool = False, generator: torch.Generator | None = None,
                      action_prefix: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """`predict` of a batch made by `batch` (the policy server makes it before the request waits its turn)."""
        batch = dict(batch)
        raw_state = batch.pop("raw_state", None)
        prefix = None
        if action_prefix is not None:
            prefix = torch.as_tensor(np.asarray(action_prefix, dtype=np.float32))
            if prefix.ndim != 2 or prefix.shape[1] != self.action_dim or len(prefix) > self.max_action_prefix:
                raise ValueError(f"action_prefix must be (d <= {self.max_action_prefix}, {self.action_dim}) in robot "
                                 f"units, got {tuple(prefix.shape)}")
            prefix = self.processor.normalize_actions(prefix[None], raw_state)
        normalized = self.policy.sample_actions(batch, self.num_steps, generator=generator,
                                                temperature=self.temperature, action_prefix=prefix)
        actions = self.processor.unnormalize_actions(normalized.cpu(), raw_state)[0]
        if not torch.isfinite(actions).all():
            state = batch.get("state")
            reach = "" if state is None else (f" (its state, normalised, reaches |x| = {state.abs().max().item():.3g};"
                                              " the training data's lie within about 1)")
            raise ObservationOutOfRange(f"the policy's actions for this observation are not finite{reach}: check it "
                                        "is in the robot units the policy was trained on")
        result = {"actions": actions.numpy().astype(np.float32)}
        if with_video:
            frames = self.policy.sample_video(batch, normalized, self.num_steps, generator=generator)[0].cpu()
            result["video"] = to_uint8(frames)
        return result
