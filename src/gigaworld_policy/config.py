"""Dataclass configs and named presets.

`PolicyConfig.preset(name)` gives a working configuration: ``tiny`` (tests), ``small`` (CPU training),
``gwp0`` (the paper: Wan2.2-TI2V-5B backbone) and ``bench`` (gwp0's token counts, narrower, for CPU timing); with
an action expert, ``tiny-expert``, ``bench-expert`` and ``gwp05`` (the authors' GigaWorld-Policy 0.5 design).
Every config checks its shape rules when it is built and says which rule broke.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal


@dataclass(frozen=True)
class WanConfig:
    """Arguments of the Wan2.2 transformer, named exactly as diffusers' `WanTransformer3DModel`."""

    patch_size: tuple[int, int, int] = (1, 2, 2)
    num_attention_heads: int = 24
    attention_head_dim: int = 128
    in_channels: int = 48
    out_channels: int = 48
    text_dim: int = 4096
    freq_dim: int = 256
    ffn_dim: int = 14336
    num_layers: int = 30
    cross_attn_norm: bool = True
    qk_norm: str | None = "rms_norm_across_heads"
    eps: float = 1e-6
    rope_max_seq_len: int = 1024

    @property
    def inner_dim(self) -> int:
        return self.num_attention_heads * self.attention_head_dim

    @property
    def token_values(self) -> int:
        """Numbers in one latent token: channels x patch volume (192 for Wan2.2's 48 channels and 1x2x2 patch)."""
        return self.in_channels * math.prod(self.patch_size)

    def __post_init__(self) -> None:
        object.__setattr__(self, "patch_size", tuple(self.patch_size))
        if len(self.patch_size) != 3:
            raise ValueError(f"patch_size must have 3 entries (t, h, w), got {self.patch_size}")
        if self.attention_head_dim % 2:
            raise ValueError(f"attention_head_dim must be even for RoPE, got {self.attention_head_dim}")
        if self.qk_norm != "rms_norm_across_heads":
            raise ValueError(f"qk_norm must be 'rms_norm_across_heads' (Wan2.2), got {self.qk_norm!r}")


@dataclass(frozen=True)
class CodecConfig:
    """How images become latents.

    ``pixel``: space-to-depth of the image itself (no VAE); latent channels = 3 * factor**2, one latent
    frame per image. ``wan_vae``: the Wan2.2 VAE (48 channels, 16x spatial, 4x temporal), which encodes the
    current frame plus the future frames as one clip, so 4 future frames become 1 latent frame.
    """

    kind: Literal["pixel", "wan_vae"] = "pixel"
    spatial_factor: int = 4
    temporal_factor: int = 1
    latent_channels: int = 48

    def __post_init__(self) -> None:
        if self.kind == "pixel":
            expected = 3 * self.spatial_factor**2
            if self.latent_channels != expected or self.temporal_factor != 1:
                raise ValueError(
                    f"pixel codec with spatial_factor {self.spatial_factor} has {expected} latent channels and "
                    f"temporal_factor 1, got {self.latent_channels} channels and temporal_factor "
                    f"{self.temporal_factor}"
                )
        elif self.kind != "wan_vae":
            raise ValueError(f"codec kind must be 'pixel' or 'wan_vae', got {self.kind!r}")


@dataclass(frozen=True)
class ActionExpertConfig:
    """A narrower transformer for the action tokens (GigaWorld-Policy 0.5; a mixture of transformers as in pi0):
    one block per Wan block, `dim` wide with a `ffn_dim` feed-forward. Its heads and head size are the Wan
    transformer's, so that all tokens attend through one attention; see `model/action_expert.py`."""

    dim: int = 1024
    ffn_dim: int = 4096

    def __post_init__(self) -> None:
        if self.dim <= 0 or self.ffn_dim <= 0:
            raise ValueError(f"action expert dim and ffn_dim must be positive, got {self.dim} and {self.ffn_dim}")


@dataclass(frozen=True)
class EmbodimentSpec:
    """One robot: its name and the true (unpadded) sizes of its state and action vectors."""

    name: str
    state_dim: int
    action_dim: int


@dataclass(frozen=True)
class PolicyConfig:
    """Everything that fixes the network's shapes and its training/inference defaults."""

    transformer: WanConfig = field(default_factory=WanConfig)
    codec: CodecConfig = field(default_factory=CodecConfig)
    embodiments: tuple[EmbodimentSpec, ...] = (EmbodimentSpec("default", 4, 4),)
    max_state_dim: int = 32
    max_action_dim: int = 32
    projector_hidden_dims: tuple[int, ...] = (128, 256)
    image_size: tuple[int, int] = (384, 320)  # (height, width) of the composite image
    text_len: int = 512  # tokens per instruction the text encoder produces (umT5 is padded to 512 in Wan)
    chunk_size: int = 48  # H: actions predicted per control step
    num_future_frames: int = 4  # F: sparse future frames supervised by the video loss
    future_stride: int = 12  # environment steps between consecutive future frames
    shift: float = 5.0  # flow-time shift s in s*u / (1 + (s-1)*u), for training and sampling
    num_inference_steps: int = 10
    action_loss_weight: float = 1.0
    video_loss_weight: float = 1.0
    shared_flow_time: bool = False  # True: actions and video share one sigma per sample (GWP-0)
    # Fraction of training samples whose action chunk is given clean (flow time 0) while their future is noised:
    # the video learns to follow a given chunk, the way `sample_video` decodes it. Those samples train no action
    # loss. With 0 a clean chunk is as rare as a flow time near 0, and the video can learn to ignore the actions.
    clean_action_prob: float = 0.0
    # Real-time chunking, trained (Black et al. 2025): with this probability per sample, the first d ~ U{0..d_max}
    # steps of the chunk are given clean, as the actions a robot commits to while the next chunk is computed, and
    # are not learned; the rest is noised as usual. `sample_actions(action_prefix=...)` then continues a prefix.
    # 0 trains exactly as without it.
    action_prefix_prob: float = 0.0
    max_action_prefix: int | None = None  # d_max; None = a quarter of the chunk
    # "patch": observation tokens are the codec latents, patchified by the DiT (the method). "cnn": a small CNN
    # sees the image instead: with video_loss_weight 0 the standard baseline; with the video loss, the method with
    # another observation encoder (the future frames are still codec latents, patchified).
    observation_encoder: Literal["patch", "cnn"] = "patch"
    # Channels of the CNN's stride-2 stages: its features have a stride of 2**len(cnn_widths) pixels and are
    # average-pooled to the token grid (the small preset's tokens are 8 pixels: 3 stages match them, 4 give
    # 16-pixel features that the pooling spreads over 2x2 tokens; on MT10 the 4 stages did better, see RESULTS).
    cnn_widths: tuple[int, ...] = (32, 64, 128, 256)
    # None: every token goes through the Wan transformer (GWP-0). Else the action tokens go through this narrower
    # expert, which shares attention with Wan at every layer (GWP-0.5); the visual part still loads from Wan2.2.
    action_expert: ActionExpertConfig | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "image_size", tuple(self.image_size))
        object.__setattr__(self, "projector_hidden_dims", tuple(self.projector_hidden_dims))
        object.__setattr__(self, "cnn_widths", tuple(self.cnn_widths))
        object.__setattr__(
            self,
            "embodiments",
            tuple(e if isinstance(e, EmbodimentSpec) else EmbodimentSpec(**e) for e in self.embodiments),
        )
        self._validate()

    # ---- derived sizes -------------------------------------------------------------------------------
    @property
    def latent_size(self) -> tuple[int, int]:
        """(h, w) of one latent frame."""
        f = self.codec.spatial_factor
        return self.image_size[0] // f, self.image_size[1] // f

    @property
    def token_grid(self) -> tuple[int, int]:
        """(h, w) of the visual token grid of one latent frame, after patchify."""
        _, ph, pw = self.transformer.patch_size
        h, w = self.latent_size
        return h // ph, w // pw

    @property
    def num_future_latent_frames(self) -> int:
        return self.num_future_frames // self.codec.temporal_factor

    @property
    def action_prefix_limit(self) -> int:
        """d_max: the longest committed action prefix trained (and accepted by `sample_actions`)."""
        return self.chunk_size // 4 if self.max_action_prefix is None else self.max_action_prefix

    @property
    def future_latent_shape(self) -> tuple[int, int, int, int]:
        """(C, F', h, w) of one sample's future latents, the shape of its video noise."""
        return (self.codec.latent_channels, self.num_future_latent_frames, *self.latent_size)

    def embodiment_index(self, name: str) -> int:
        names = [e.name for e in self.embodiments]
        if name not in names:
            raise ValueError(f"unknown embodiment {name!r}; this policy knows {names}")
        return names.index(name)

    def _validate(self) -> None:
        t = self.transformer
        if t.in_channels != self.codec.latent_channels or t.out_channels != self.codec.latent_channels:
            raise ValueError(
                f"transformer in/out channels ({t.in_channels}/{t.out_channels}) must equal the codec's "
                f"latent channels ({self.codec.latent_channels})"
            )
        if t.patch_size[0] != 1:
            raise ValueError(f"temporal patch size must be 1 (one latent frame per token row), got {t.patch_size}")
        step = (self.codec.spatial_factor * t.patch_size[1], self.codec.spatial_factor * t.patch_size[2])
        if self.image_size[0] % step[0] or self.image_size[1] % step[1]:
            raise ValueError(
                f"image_size {self.image_size} (H, W) must be divisible by codec factor x patch size = {step}"
            )
        if self.num_future_frames % self.codec.temporal_factor:
            raise ValueError(
                f"num_future_frames ({self.num_future_frames}) must be a multiple of the codec's temporal factor "
                f"({self.codec.temporal_factor})"
            )
        if self.num_future_frames * self.future_stride > self.chunk_size:
            raise ValueError(
                f"future frames must lie within the action chunk: num_future_frames x future_stride = "
                f"{self.num_future_frames} x {self.future_stride} > chunk_size {self.chunk_size}"
            )
        if not self.embodiments:
            raise ValueError("at least one embodiment is required")
        for e in self.embodiments:
            if e.state_dim > self.max_state_dim or e.action_dim > self.max_action_dim:
                raise ValueError(
                    f"embodiment {e.name!r} has state/action dims {e.state_dim}/{e.action_dim}, beyond the "
                    f"maximum {self.max_state_dim}/{self.max_action_dim}"
                )
        longest = max(self.chunk_size, 1 + self.num_future_latent_frames, *self.token_grid)
        if longest > t.rope_max_seq_len:
            raise ValueError(f"a RoPE position reaches {longest}, beyond rope_max_seq_len {t.rope_max_seq_len}")
        if self.shift <= 0:
            raise ValueError(f"shift must be positive, got {self.shift}")
        if not 0 <= self.clean_action_prob < 1:
            raise ValueError(f"clean_action_prob must be in [0, 1), got {self.clean_action_prob}")
        if not 0 <= self.action_prefix_prob <= 1:
            raise ValueError(f"action_prefix_prob must be in [0, 1], got {self.action_prefix_prob}")
        if not 0 <= self.action_prefix_limit < self.chunk_size:
            raise ValueError(f"max_action_prefix must be in [0, chunk_size) = [0, {self.chunk_size}), got "
                             f"{self.max_action_prefix}")
        if self.observation_encoder not in ("patch", "cnn"):
            raise ValueError(f"observation_encoder must be 'patch' or 'cnn', got {self.observation_encoder!r}")
        if not self.cnn_widths or any(w <= 0 or w % 8 for w in self.cnn_widths):
            raise ValueError(f"cnn_widths must be one or more positive multiples of 8 (each stage has 8 GroupNorm "
                             f"groups), got {self.cnn_widths}")

    # ---- (de)serialisation ---------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PolicyConfig:
        """The config `to_dict` gave; a key that is not a field is an error that names it."""
        _check_fields(cls, data)
        data = dict(data)
        data["transformer"] = _from_fields(WanConfig, data.get("transformer", {}), "transformer.")
        data["codec"] = _from_fields(CodecConfig, data.get("codec", {}), "codec.")
        data["embodiments"] = tuple(_from_fields(EmbodimentSpec, e, f"embodiments[{i}].")
                                    for i, e in enumerate(data.get("embodiments", ())))
        if data.get("action_expert") is not None:
            data["action_expert"] = _from_fields(ActionExpertConfig, data["action_expert"], "action_expert.")
        return cls(**data)

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> PolicyConfig:
        """A config.json (a checkpoint's, or a --policy-config); what is wrong with it is said with its path."""
        data = read_json(path)
        try:
            return cls.from_dict(data)
        except (TypeError, ValueError) as error:  # TypeError: a value of the wrong type met a shape rule
            raise ValueError(f"{path}: {error}") from None

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def replace(self, **changes: Any) -> PolicyConfig:
        return dataclasses.replace(self, **changes)

    @classmethod
    def preset(cls, name: str) -> PolicyConfig:
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
        return PRESETS[name]()


def read_json(path: str | os.PathLike) -> Any:
    """The JSON in `path`; a file that is not JSON (cut short, binary) is a ValueError that names it."""
    try:
        return json.loads(Path(path).read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{path} is not a JSON file ({error})") from None


def _check_fields(cls: type, data: Any, prefix: str = "") -> None:
    """Refuse `data` unless it is a dict of `cls`'s fields; an unknown key is named (with the field it may mean),
    not left to the constructor's TypeError, which names only the first one."""
    if not isinstance(data, dict):
        where = prefix.rstrip(".") or "the config"
        raise ValueError(f"{where} must be an object of {cls.__name__} fields, got {type(data).__name__}")
    known = [f.name for f in dataclasses.fields(cls)]
    unknown = [key for key in data if key not in known]
    if unknown:
        guesses = [did_you_mean(key, known) for key in unknown]
        named = ", ".join(repr(prefix + key) + guess for key, guess in zip(unknown, guesses, strict=True))
        # the whole list only when a guess is missing: a typo's one suggestion reads better without it
        fields = "" if all(guesses) else f"; {cls.__name__} has {known}"
        raise ValueError(f"unknown config field{'s' * (len(unknown) > 1)} {named}{fields}")


def did_you_mean(name: str, known: list[str]) -> str:
    """' (did you mean 'chunk_size'?)' for a name close to one of `known`, else ''."""
    close = difflib.get_close_matches(name, known, 1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _from_fields(cls: type, data: Any, prefix: str):
    _check_fields(cls, data, prefix)
    return cls(**data)


def _tiny() -> PolicyConfig:
    return PolicyConfig(
        transformer=WanConfig(
            num_attention_heads=2, attention_head_dim=16, in_channels=48, out_channels=48, text_dim=384,
            freq_dim=32, ffn_dim=64, num_layers=2, rope_max_seq_len=64,
        ),
        codec=CodecConfig("pixel", spatial_factor=4, latent_channels=48),
        embodiments=(EmbodimentSpec("sawyer", 4, 4), EmbodimentSpec("bimanual", 14, 14)),
        max_state_dim=14, max_action_dim=14, projector_hidden_dims=(32,),
        image_size=(32, 32), text_len=16, chunk_size=8, num_future_frames=2, future_stride=4,
        num_inference_steps=4,
    )


def _small() -> PolicyConfig:
    # 256 wide, wider than a video token (48 channels x 2x2 patch = 192 values): the network predicts the
    # velocity noise - x0, so it must carry each token's noise through; at 128 wide the video loss plateaus
    # near 0.4 and sampled frames stay noise.
    return PolicyConfig(
        transformer=WanConfig(
            num_attention_heads=4, attention_head_dim=64, in_channels=48, out_channels=48, text_dim=384,
            freq_dim=64, ffn_dim=1024, num_layers=4, rope_max_seq_len=128,
        ),
        codec=CodecConfig("pixel", spatial_factor=4, latent_channels=48),
        embodiments=(EmbodimentSpec("sawyer", 4, 4),),
        max_state_dim=8, max_action_dim=8, projector_hidden_dims=(64, 128),
        image_size=(64, 96), text_len=32, chunk_size=16, num_future_frames=2, future_stride=8,
    )


def _gwp0() -> PolicyConfig:
    return PolicyConfig(
        transformer=WanConfig(),  # Wan2.2-TI2V-5B
        codec=CodecConfig("wan_vae", spatial_factor=16, temporal_factor=4, latent_channels=48),
        embodiments=(EmbodimentSpec("aloha_agilex", 14, 14),),
        max_state_dim=32, max_action_dim=32, projector_hidden_dims=(128, 256),
        image_size=(384, 320), text_len=512, chunk_size=48, num_future_frames=4, future_stride=12,
    )


def _bench() -> PolicyConfig:
    # gwp0's token counts (1 state, 10x12 = 120 observation, 48 action, 120 future tokens) with the pixel
    # codec at a quarter of the resolution and a narrower network, so a CPU can time all decoding modes.
    return PolicyConfig(
        transformer=WanConfig(
            num_attention_heads=6, attention_head_dim=128, in_channels=48, out_channels=48, text_dim=384,
            freq_dim=256, ffn_dim=3072, num_layers=6, rope_max_seq_len=128,
        ),
        codec=CodecConfig("pixel", spatial_factor=4, latent_channels=48),
        embodiments=(EmbodimentSpec("aloha_agilex", 14, 14),),
        max_state_dim=32, max_action_dim=32, projector_hidden_dims=(128, 256),
        image_size=(96, 80), text_len=32, chunk_size=48, num_future_frames=1, future_stride=48,
    )


def _with_expert(preset: Callable[[], PolicyConfig], dim: int, ffn_dim: int) -> Callable[[], PolicyConfig]:
    return lambda: preset().replace(action_expert=ActionExpertConfig(dim, ffn_dim))


PRESETS = {
    "tiny": _tiny, "small": _small, "gwp0": _gwp0, "bench": _bench,
    # small planning 48 steps ahead, about 1 s at ALOHA's 50 Hz (small's 16 are 0.32 s there; ACT plans 100 steps),
    # with its 2 future frames spread over the chunk
    "small-chunk48": lambda: _small().replace(chunk_size=48, future_stride=24),
    # tiny's expert is narrower than its 32-wide transformer, so that tests see the two widths apart
    "tiny-expert": _with_expert(_tiny, 16, 32),
    # bench with a quarter-width expert (768 -> 192, FFN 3072 -> 768), for CPU timing against bench
    "bench-expert": _with_expert(_bench, 192, 768),
    # Wan2.2-TI2V-5B + a 1024-wide expert (FFN 4096, pi0's action-expert width)
    "gwp05": _with_expert(_gwp0, 1024, 4096),
}
