"""GigaWorld-Policy: one Wan DiT over state, observation, action and future-video tokens.

Two training/inference verbs, as in openpi's pi0:

* `compute_loss(batch)`: flow matching on the action chunk and the sparse future frames at once.
* `sample_actions(batch)`: action-only decoding. The clean prefix (state + observation) never attends to
  actions or video, so its keys/values are computed once and reused at every Euler step; text
  cross-attention keys/values are computed once per call.

`sample_video` decodes future frames given the observation and an action chunk; `sample_joint` denoises
actions and video together without any cache (the path of Motus and the authors' first model), kept as the
reference for speed comparisons.

With `config.action_expert` the action tokens go through a narrower transformer that shares attention with the
Wan blocks (`action_expert.py`); the cached Euler steps of action-only decoding then run the expert alone.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from itertools import pairwise
from pathlib import Path
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file
from torch import Tensor, nn

from ..atomic import atomic_directory, save_tensors
from ..config import PolicyConfig
from ..data.processor import RobotProcessor, read_processors, write_processors
from ..encoders import PixelCodec
from . import flow
from .action_expert import EXPERT_BLOCKS, ActionExpert, Stream, run_joint_blocks
from .embodiment import EmbodimentMLP
from .image_encoder import ConvImageEncoder
from .inputs import PolicyInputs, TextEncoderFn, prepare_inputs
from .layout import NUM_TIME_GROUPS, TIME_GROUP, TokenLayout
from .lora import LORA_CONFIG, LORA_WEIGHTS, LoraSpec, read_lora, write_lora
from .wan import KV, Rope, TextContext, WanTransformer, run_blocks

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
EMA_WEIGHTS_NAME = "ema.safetensors"


class SequencePlan(NamedTuple):
    """What the blocks need for one stretch of the token layout, computed once outside the Euler loop. Tokens and
    keys are in `TokenLayout.attention_order`: the Wan blocks' tokens first, then the action expert's, if any."""

    groups: Tensor  # (n,) or (B, n) flow-time group of each token
    rope: Rope
    mask: object  # (n, keys) bool, or the attention backend's form of it; None when every key is visible
    num_main: int  # how many of the n tokens go through the Wan blocks (all, without an action expert)


class Tokens(NamedTuple):
    """Tokens (or hidden states) of consecutive blocks, split by the transformer they go through, each part in
    sequence order: `main` (B, n, D) through the Wan blocks, `expert` (B, n_a, d) through the action expert.
    None: no tokens. Without an action expert every token is main."""

    main: Tensor | None
    expert: Tensor | None = None

    def then(self, other: Tokens) -> Tokens:
        """These tokens followed by `other`'s."""
        def join(a: Tensor | None, b: Tensor | None) -> Tensor | None:
            return b if a is None else a if b is None else torch.cat([a, b], dim=1)
        return Tokens(join(self.main, other.main), join(self.expert, other.expert))


def check_temperature(temperature: float) -> None:
    """Action-sampling temperatures multiply Gaussian noise: finite and >= 0."""
    if not (math.isfinite(temperature) and temperature >= 0):
        raise ValueError(f"temperature must be a finite number >= 0, got {temperature}")


def check_safetensors(path: Path) -> None:
    """Refuse a weights file that safetensors cannot read whole. Its header gives every tensor's place in the file,
    so a file cut short (a full disk, an interrupted copy) is told apart from one that is not safetensors at all."""
    try:
        with safe_open(str(path), "pt"):
            return
    except SafetensorError as error:
        size = path.stat().st_size
        expected = _announced_size(path, size)
        if expected is None or size >= expected:
            raise ValueError(f"{path} is not a safetensors file ({error})") from None
        raise ValueError(f"{path} is truncated: it has {size} bytes, its header needs at least {expected}") from None


def _announced_size(path: Path, size: int) -> int | None:
    """How many bytes the safetensors header at the start of a file of `size` bytes needs (8-byte length, JSON
    header, tensor data); None when the file does not start with such a header."""
    with path.open("rb") as file:
        length = int.from_bytes(file.read(8), "little")
        if 8 + length > size:  # a header cut short if it starts like one (JSON), else garbage: don't read `length`
            return 8 + length if file.read(1) == b"{" else None
        try:
            header = json.loads(file.read(length))
            return 8 + length + max((t["data_offsets"][1] for k, t in header.items() if k != "__metadata__"), default=0)
        except (ValueError, TypeError, KeyError, IndexError, AttributeError):  # not JSON, or JSON of another shape
            return None


class GigaWorldPolicy(nn.Module):
    _no_split_modules = ("TransformerBlock",)  # FSDP's unit of sharding under accelerate's transformer_based_wrap

    def __init__(self, config: PolicyConfig):
        super().__init__()
        self.config = config
        dim = config.transformer.inner_dim
        hidden = config.projector_hidden_dims
        num_embodiments = len(config.embodiments)
        action_width = config.action_expert.dim if config.action_expert else dim  # of the action tokens
        self.transformer = WanTransformer.from_config(config.transformer)
        self.state_encoder = EmbodimentMLP(num_embodiments, (config.max_state_dim, *hidden, dim))
        self.action_encoder = EmbodimentMLP(num_embodiments, (config.max_action_dim, *hidden, action_width))
        self.action_decoder = EmbodimentMLP(num_embodiments, (action_width, *reversed(hidden), config.max_action_dim))
        if config.observation_encoder == "cnn":
            self.image_encoder = ConvImageEncoder(dim, config.token_grid, config.cnn_widths)
        self.action_expert = ActionExpert(config.action_expert, config.transformer) if config.action_expert else None
        self._expert_blocks = EXPERT_BLOCKS if self.action_expert is not None else ()
        # Frozen codec and text encoder are plain attributes, not submodules: checkpoints hold trained weights
        # only. The Wan VAE codec has weights of its own and is attached after construction.
        self.codec = PixelCodec(config.codec.spatial_factor) if config.codec.kind == "pixel" else None
        self.text_encoder: TextEncoderFn | None = None
        # How robot observations become model inputs and model actions robot units, per embodiment name (fitted to
        # the training data); saved beside the weights as processor.json.
        self.processors: dict[str, RobotProcessor] = {}
        self.lora: LoraSpec | None = None  # LoRA adapters on the transformer (`lora.add_lora`), and their base

    @property
    def device(self) -> torch.device:
        return self.transformer.proj_out.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.transformer.proj_out.weight.dtype

    # ---- inputs -------------------------------------------------------------------------------------
    def prepare(self, batch: dict[str, Any]) -> PolicyInputs:
        return prepare_inputs(batch, self.config, self.device, self.dtype, self.text_encoder)

    def _encode_frames(self, frames: Tensor) -> Tensor:
        """frames (B, T, 3, H, W) -> latents (B, C, T', h, w); the first frame gets its own latent frame."""
        if self.codec is None:
            raise ValueError(f"this policy's {self.config.codec.kind!r} codec is not attached: set policy.codec, "
                             f"e.g. WanVAECodec.from_pretrained(<Wan2.2 vae folder>)")
        latents = self.codec.encode(frames)
        expected = (self.config.codec.latent_channels, *self.config.latent_size)
        if (latents.shape[1], *latents.shape[3:]) != expected:
            raise ValueError(f"the codec gives latents of (C, h, w) = {(latents.shape[1], *latents.shape[3:])}, "
                             f"the policy expects {expected}")
        return latents

    def _latents(self, inputs: PolicyInputs, with_future: bool) -> Tensor:
        """(B, C, 1 [+ F'], h, w): the current image's latent frame, then the future ones if asked for —
        precomputed when the batch has 'latents', else encoded now."""
        if inputs.latents is not None:
            return inputs.latents if with_future else inputs.latents[:, :, :1]
        frames = inputs.image[:, None]
        if with_future:
            frames = torch.cat([frames, inputs.future_images], dim=1)
        return self._encode_frames(frames)

    def _layout(self, inputs: PolicyInputs, num_action: int, num_future_frames: int) -> TokenLayout:
        return TokenLayout(int(inputs.state is not None), self.config.token_grid, num_action, num_future_frames)

    def _prefix_tokens(self, inputs: PolicyInputs, observation: Tensor) -> Tensor:
        """State + observation tokens (B, P, D); observation latents (B, C, 1, h, w)."""
        if self.config.observation_encoder == "cnn":
            if inputs.image is None:
                raise ValueError("the CNN observation encoder needs 'image', not precomputed 'latents'")
            tokens = [self.image_encoder(inputs.image)]
        else:
            tokens = [self.transformer.patchify(observation)]
        if inputs.state is not None:
            tokens.insert(0, self.state_encoder(inputs.state[:, None], inputs.embodiment))
        return torch.cat(tokens, dim=1)

    def _text(self, inputs: PolicyInputs) -> TextContext:
        return self.transformer.encode_text(inputs.text_embeds, inputs.text_mask)

    # ---- the one forward path -----------------------------------------------------------------------
    def _plan(self, layout: TokenLayout, rows: slice, committed: Tensor | None = None) -> SequencePlan:
        """Plan for running the tokens `rows` of `layout`; they see every key before rows.stop (the cached ones
        were computed by a plan for the rows before). committed (B, H) bool: action steps that are clean context (a
        committed prefix), in the clean time group, per sample."""
        queries = layout.attention_order(rows, self._expert_blocks)
        keys = torch.cat([layout.attention_order(slice(0, rows.start), self._expert_blocks), queries])
        mask = layout.attention_mask[queries[:, None], keys]
        groups = layout.time_groups
        if committed is not None:
            groups = groups.expand(len(committed), -1).clone()
            actions = layout.span("action")
            groups[:, actions] = groups[:, actions].masked_fill(committed.cpu(), TIME_GROUP["observation"])
        return SequencePlan(
            groups[..., queries].to(self.device),
            self.transformer.rope(layout.positions[queries]),
            self.transformer.self_attention_mask(None if bool(mask.all()) else mask.to(self.device)),
            len(queries) - sum(layout.count(block, rows) for block in self._expert_blocks),
        )

    def _tokens(self, prefix: Tensor | None = None, actions: Tensor | None = None,
                future: Tensor | None = None) -> Tokens:
        """Tokens of consecutive blocks (None: absent): prefix (B, P, D) state + observation, actions (B, H, d) from
        the action encoder, future (B, n, D) video tokens."""
        if self.action_expert is None:
            return Tokens(torch.cat([t for t in (prefix, actions, future) if t is not None], dim=1))
        main = [t for t in (prefix, future) if t is not None]
        return Tokens(torch.cat(main, dim=1) if main else None, actions)

    def _block_hidden(self, hidden: Tokens, layout: TokenLayout, rows: slice, block: str) -> Tensor:
        """The hidden states (B, n, width) of `block`, one of the blocks of `rows`, from `_transform`'s output."""
        held = hidden.expert if block in self._expert_blocks else hidden.main
        return held[:, layout.held_span(block, rows, self._expert_blocks)]

    def _transform(
        self, tokens: Tokens | Tensor, plan: SequencePlan, sigmas: Tensor, text: TextContext,
        past_kv: list[KV] | None = None,
    ) -> tuple[Tokens | Tensor, list[KV]]:
        """tokens of the plan's rows (a tensor (B, n, D): all main), sigmas (B, NUM_TIME_GROUPS) -> normalised hidden
        states in the same form, and each layer's keys/values of the rows. Only the transformers that have tokens
        run: with an action expert, a pass over the action tokens alone runs the expert's weights alone."""
        if isinstance(tokens, Tensor):
            hidden, kv = self._transform(Tokens(tokens), plan, sigmas, text, past_kv)
            return hidden.main, kv
        models = (self.transformer, self.action_expert)
        held = (slice(0, plan.num_main), slice(plan.num_main, None))  # each transformer's share of the rows
        present = [i for i, x in enumerate(tokens) if x is not None]
        times = {i: models[i].embed_time(sigmas * 1000) for i in present}  # temb, modulation
        streams = [Stream(models[i].blocks, tokens[i], times[i][1], plan.groups[..., held[i]],
                          Rope(*(table[held[i]] for table in plan.rope))) for i in present]
        checkpointing = self.transformer.gradient_checkpointing  # one switch for both transformers
        if len(streams) == 1:  # one transformer: its blocks' own (compilable) forward
            s = streams[0]
            x, kv = run_blocks(s.blocks, s.x, s.modulation, s.groups, s.rope, text, plan.mask, past_kv, checkpointing)
            xs = [x]
        else:
            xs, kv = run_joint_blocks(streams, text, plan.mask, past_kv, checkpointing)
        hidden = [None, None]
        for i, x, s in zip(present, xs, streams, strict=True):
            hidden[i] = models[i].output_norm(x, times[i][0], s.groups)
        return Tokens(*hidden), kv

    def _video_velocity(self, hidden: Tensor) -> Tensor:
        """hidden (B, F'*h*w, D) -> velocity (B, C, F', h, w) of the future latents."""
        rows, cols = self.config.token_grid
        frames = hidden.shape[1] // (rows * cols)
        return self.transformer.unpatchify(self.transformer.proj_out(hidden), (frames, rows, cols))

    # ---- training -----------------------------------------------------------------------------------
    def forward(self, batch: dict[str, Any], generator: torch.Generator | None = None):
        """Same as `compute_loss`; going through `forward` lets DDP/FSDP wrappers synchronise gradients."""
        return self.compute_loss(batch, generator)

    def compute_loss(
        self, batch: dict[str, Any], generator: torch.Generator | None = None
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """Flow-matching loss. Batches without 'actions' train the video alone (action-free pre-training);
        batches without 'future_images' (or with video_loss_weight 0) train the actions alone."""
        cfg = self.config
        inputs = self.prepare(batch)
        b, device = inputs.batch_size, self.device
        with_actions = inputs.actions is not None and cfg.action_loss_weight > 0
        with_video = inputs.has_future and cfg.video_loss_weight > 0
        if not (with_actions or with_video):
            raise ValueError("nothing to learn: the batch has neither 'actions' nor 'future_images' with a weight")

        # Random draws in a fixed order, none depending on the data, so a generator makes the loss repeatable.
        sigma_action = flow.sample_sigma(b, cfg.shift, generator).to(device)
        sigma_video = sigma_action if cfg.shared_flow_time else flow.sample_sigma(b, cfg.shift, generator).to(device)
        given = torch.zeros(b, dtype=torch.bool, device=device)  # samples whose clean chunk conditions the video
        if with_actions and with_video and cfg.clean_action_prob > 0:
            given = (torch.rand(b, generator=generator) < cfg.clean_action_prob).to(device)
            sigma_action = sigma_action.masked_fill(given, 0.0)
        sigmas = torch.zeros(b, NUM_TIME_GROUPS, device=device)
        sigmas[:, TIME_GROUP["action"]] = sigma_action
        sigmas[:, TIME_GROUP["future"]] = sigma_video

        latents = self._latents(inputs, with_video)
        prefix, action_tokens, video_tokens = self._prefix_tokens(inputs, latents[:, :, :1]), None, None

        if with_actions:
            noise = torch.randn(inputs.actions.shape, generator=generator).to(device, self.dtype)
            noise = noise * inputs.action_dim_mask[:, None]
        if with_video:
            future = latents[:, :, 1:]
            video_noise = torch.randn(future.shape, generator=generator).to(device, self.dtype)
        committed = self._draw_committed(b, generator) if with_actions else None  # drawn last: d = 0 changes nothing
        if with_actions:
            noisy_actions = flow.add_noise(inputs.actions, noise, sigma_action)
            if committed is not None:  # a committed prefix is clean context, as when it is executed
                noisy_actions = torch.where(committed[..., None], inputs.actions, noisy_actions)
            action_tokens = self.action_encoder(noisy_actions, inputs.embodiment)
        if with_video:
            video_tokens = self.transformer.patchify(flow.add_noise(future, video_noise, sigma_video))

        layout = self._layout(inputs, cfg.chunk_size if with_actions else 0, latents.shape[2] - 1)
        everything = slice(0, layout.num_tokens)
        hidden, _ = self._transform(self._tokens(prefix, action_tokens, video_tokens),
                                    self._plan(layout, everything, committed), sigmas, self._text(inputs))

        zero = prefix.new_zeros(())
        loss_action = loss_video = zero
        if with_actions:
            velocity = self.action_decoder(self._block_hidden(hidden, layout, everything, "action"), inputs.embodiment)
            learned = ~inputs.action_is_pad & ~given[:, None]
            if committed is not None:
                learned &= ~committed
            valid = learned[:, :, None] & inputs.action_dim_mask[:, None, :]
            error = (velocity.float() - flow.velocity_target(inputs.actions, noise).float()) ** 2
            loss_action = (error * valid).sum() / valid.sum().clamp(min=1)
        if with_video:
            velocity = self._video_velocity(self._block_hidden(hidden, layout, everything, "future"))
            error = ((velocity.float() - flow.velocity_target(future, video_noise).float()) ** 2).mean(dim=(1, 3, 4))
            k = self.config.codec.temporal_factor
            valid = ~inputs.future_is_pad.unflatten(1, (-1, k)).all(dim=-1)  # a latent frame of only padding
            loss_video = (error * valid).sum() / valid.sum().clamp(min=1)
        loss = cfg.action_loss_weight * loss_action + cfg.video_loss_weight * loss_video
        info = {"loss_action": loss_action.detach(), "loss_video": loss_video.detach(),
                "sigma_action": sigma_action, "sigma_video": sigma_video}
        if committed is not None:
            info["action_prefix_steps"] = committed.sum(dim=1)  # (B,) committed steps of each sample
        return loss, info

    def _draw_committed(self, batch_size: int, generator: torch.Generator | None) -> Tensor | None:
        """(B, H) bool: the first d ~ U{0..d_max} action steps of a share `action_prefix_prob` of the samples, given
        clean as a committed prefix (real-time chunking); None without it (no draws: training is as before)."""
        cfg = self.config
        if cfg.action_prefix_prob == 0:
            return None
        conditioned = torch.rand(batch_size, generator=generator) < cfg.action_prefix_prob
        lengths = torch.randint(0, cfg.action_prefix_limit + 1, (batch_size,), generator=generator) * conditioned
        return (torch.arange(cfg.chunk_size)[None] < lengths[:, None]).to(self.device)

    # ---- inference ----------------------------------------------------------------------------------
    def _euler(self, x: list[Tensor], num_steps: int, velocity: Callable[[list[Tensor], Tensor], list[Tensor]]):
        sigmas = flow.sampling_sigmas(num_steps, self.config.shift, self.device)
        for sigma, sigma_next in pairwise(sigmas):
            x = [xi + (sigma_next - sigma) * vi for xi, vi in zip(x, velocity(x, sigma), strict=True)]
        return x

    def _denoise_last_block(
        self,
        context: Tokens,
        layout: TokenLayout,
        block: str,
        noise: Tensor,
        embed: Callable[[Tensor], Tokens],
        head: Callable[[Tensor], Tensor],
        text: TextContext,
        num_steps: int,
        use_cache: bool,
        committed: Tensor | None = None,
    ) -> Tensor:
        """Denoise `block`, the last block of `layout`, given the clean tokens before it; `committed` (B, H) marks
        action steps that are clean already (`head` must give them zero velocity).

        With the cache the clean context runs through the blocks once and only `block`'s tokens run at
        each step; without it the whole sequence runs at each step. Both give the same result."""
        rows = layout.span(block)
        clean = torch.zeros(len(noise), NUM_TIME_GROUPS, device=self.device)
        if use_cache:
            _, cache = self._transform(context, self._plan(layout, slice(0, rows.start)), clean, text)
            run = rows
        else:
            cache, run = None, slice(0, rows.stop)
        plan = self._plan(layout, run, committed)

        def velocity(x: list[Tensor], sigma: Tensor) -> list[Tensor]:
            sigmas = clean.clone()
            sigmas[:, TIME_GROUP[block]] = sigma
            tokens = embed(x[0]) if use_cache else context.then(embed(x[0]))
            hidden, _ = self._transform(tokens, plan, sigmas, text, cache)
            return [head(self._block_hidden(hidden, layout, run, block))]

        return self._euler([noise], num_steps, velocity)[0]

    def _action_noise(self, inputs: PolicyInputs, noise: Tensor | None, generator=None) -> Tensor:
        shape = (inputs.batch_size, self.config.chunk_size, self.config.max_action_dim)
        if noise is None:
            noise = torch.randn(shape, generator=generator)
        elif noise.shape[:2] != shape[:2] or noise.shape[2] > shape[2]:
            raise ValueError(f"action noise must have shape {shape} (or fewer action dims), got {tuple(noise.shape)}")
        # The ODE state stays in float32 whatever the weights' dtype; tokens are cast when embedded.
        noise = F.pad(noise, (0, shape[2] - noise.shape[2])).to(self.device, torch.float32)
        return noise * inputs.action_dim_mask[:, None]

    def _video_noise(self, inputs: PolicyInputs, noise: Tensor | None, generator=None) -> Tensor:
        shape = (inputs.batch_size, *self.config.future_latent_shape)
        if noise is None:
            noise = torch.randn(shape, generator=generator)
        if tuple(noise.shape) != shape:
            raise ValueError(f"video noise must have shape {shape}, got {tuple(noise.shape)}")
        return noise.to(self.device, torch.float32)

    def _output_action_dims(self, inputs: PolicyInputs) -> int:
        return int(inputs.action_dim_mask.sum(dim=1).max())

    @torch.no_grad()
    def sample_actions(
        self,
        batch: dict[str, Any],
        num_steps: int | None = None,
        noise: Tensor | None = None,
        use_cache: bool = True,
        generator: torch.Generator | None = None,
        temperature: float = 1.0,
        action_prefix: Tensor | None = None,
    ) -> Tensor:
        """Action-only decoding -> normalised actions (B, H, A), A = the largest action dim of the batch's
        embodiments (smaller embodiments are zero beyond their own dims). noise: (B, H, A) start point.
        temperature multiplies the start point: 1 samples the learned action distribution, 0 decodes one chunk
        deterministically from the noise's mean, which leaves out the spread of the demonstrations (their noise,
        when it cannot be predicted from the observation).

        action_prefix (B, d, A), normalised: actions already committed to (real-time chunking: those the robot
        executes while this chunk is computed). They are clean context inside the action block, so decoding costs
        the same; the chunk's first d steps are the prefix exactly and the rest continues it. d <= d_max
        (`config.action_prefix_limit`); a policy trained with `action_prefix_prob` > 0 has learned to continue."""
        check_temperature(temperature)
        inputs = self.prepare(batch)
        observation = self._latents(inputs, with_future=False)
        layout = self._layout(inputs, self.config.chunk_size, 0)
        start = self._action_noise(inputs, noise, generator) * temperature
        committed = None
        if action_prefix is not None and action_prefix.shape[1:2] != (0,):
            prefix = self._checked_prefix(inputs, action_prefix)
            start = torch.cat([prefix, start[:, len(prefix[0]):]], dim=1)
            committed = (torch.arange(self.config.chunk_size, device=self.device) < prefix.shape[1]).expand(
                inputs.batch_size, -1)
        free = 1.0 if committed is None else (~committed)[..., None]  # committed steps do not move
        actions = self._denoise_last_block(
            self._tokens(self._prefix_tokens(inputs, observation)), layout, "action", start,
            embed=lambda x: self._tokens(actions=self.action_encoder(x.to(self.dtype), inputs.embodiment)),
            head=lambda h: self.action_decoder(h, inputs.embodiment) * inputs.action_dim_mask[:, None] * free,
            text=self._text(inputs), num_steps=num_steps or self.config.num_inference_steps, use_cache=use_cache,
            committed=committed,
        )
        return actions[..., : self._output_action_dims(inputs)]

    def _checked_prefix(self, inputs: PolicyInputs, prefix: Tensor) -> Tensor:
        """A committed action prefix (B, d, A <= max_action_dim) as the ODE state's first d steps (B, d, max A)."""
        b, limit = inputs.batch_size, self.config.action_prefix_limit
        if prefix.ndim != 3 or prefix.shape[0] != b or prefix.shape[2] > self.config.max_action_dim:
            raise ValueError(f"action_prefix must be (B={b}, d, A <= {self.config.max_action_dim}), got "
                             f"{tuple(prefix.shape)}")
        if prefix.shape[1] > limit:
            raise ValueError(f"action_prefix has {prefix.shape[1]} steps; this policy continues at most {limit} "
                             f"(max_action_prefix)")
        if not torch.isfinite(prefix).all():
            raise ValueError("action_prefix contains NaN or infinite values")
        prefix = F.pad(prefix.float(), (0, self.config.max_action_dim - prefix.shape[2])).to(self.device)
        return prefix * inputs.action_dim_mask[:, None]

    def compile(self, **kwargs) -> GigaWorldPolicy:
        """Compile each transformer block with torch.compile (regional compilation: the blocks share one
        graph, so compiling is quick). Shapes differ between the prefix pass and the denoising steps; each is
        compiled once. kwargs go to torch.compile (e.g. mode="max-autotune")."""
        for block in [*self.transformer.blocks, *(self.action_expert.blocks if self.action_expert else ())]:
            block.compile(dynamic=False, **kwargs)
        return self

    @torch.no_grad()
    def sample_video(
        self,
        batch: dict[str, Any],
        actions: Tensor,
        num_steps: int | None = None,
        noise: Tensor | None = None,
        use_cache: bool = True,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Future frames (B, F, 3, H, W) in [-1, 1] given the observation and an action chunk (B, H, A).
        noise: (B, C, F', h, w) in latent space."""
        inputs = self.prepare({**batch, "actions": actions})
        observation = self._latents(inputs, with_future=False)
        layout = self._layout(inputs, self.config.chunk_size, self.config.num_future_latent_frames)
        context = self._tokens(self._prefix_tokens(inputs, observation),
                               self.action_encoder(inputs.actions, inputs.embodiment))
        future = self._denoise_last_block(
            context, layout, "future", self._video_noise(inputs, noise, generator),
            embed=lambda x: self._tokens(future=self.transformer.patchify(x.to(self.dtype))), head=self._video_velocity,
            text=self._text(inputs), num_steps=num_steps or self.config.num_inference_steps, use_cache=use_cache,
        )
        return self.codec.decode(torch.cat([observation, future.to(observation.dtype)], dim=2))[:, 1:]

    @torch.no_grad()
    def sample_joint(
        self,
        batch: dict[str, Any],
        num_steps: int | None = None,
        action_noise: Tensor | None = None,
        video_noise: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Reference joint decoding, no cache: the full S,O,A,V sequence runs at every step and actions and
        video are denoised together. Returns actions (B, H, A) and future latents (B, C, F', h, w)."""
        inputs = self.prepare(batch)
        observation = self._latents(inputs, with_future=False)
        num_frames = self.config.num_future_latent_frames
        layout = self._layout(inputs, self.config.chunk_size, num_frames)
        everything = slice(0, layout.num_tokens)
        plan = self._plan(layout, everything)
        prefix, text = self._prefix_tokens(inputs, observation), self._text(inputs)
        action_mask = inputs.action_dim_mask[:, None]

        def velocity(x: list[Tensor], sigma: Tensor) -> list[Tensor]:
            sigmas = torch.zeros(inputs.batch_size, NUM_TIME_GROUPS, device=self.device)
            sigmas[:, TIME_GROUP["action"]] = sigma
            sigmas[:, TIME_GROUP["future"]] = sigma
            tokens = self._tokens(prefix, self.action_encoder(x[0].to(self.dtype), inputs.embodiment),
                                  self.transformer.patchify(x[1].to(self.dtype)))
            hidden, _ = self._transform(tokens, plan, sigmas, text)
            return [
                self.action_decoder(self._block_hidden(hidden, layout, everything, "action"), inputs.embodiment)
                * action_mask,
                self._video_velocity(self._block_hidden(hidden, layout, everything, "future")),
            ]

        start = [self._action_noise(inputs, action_noise, generator), self._video_noise(inputs, video_noise, generator)]
        actions, future = self._euler(start, num_steps or self.config.num_inference_steps, velocity)
        return actions[..., : self._output_action_dims(inputs)], future

    # ---- checkpoints --------------------------------------------------------------------------------
    def save_pretrained(self, directory: str | os.PathLike, ema_state: dict[str, Tensor] | None = None) -> None:
        """Write config.json, model.safetensors, processor.json (and ema.safetensors) atomically."""
        with atomic_directory(directory) as tmp:
            self.write_pretrained(tmp, ema_state)

    def write_pretrained(self, folder: Path, ema_state: dict[str, Tensor] | None = None,
                         state: dict[str, Tensor] | None = None) -> None:
        """Write the checkpoint files into an existing folder (callers make that atomic). `state`: the full
        weights when this module holds only a shard of them (FSDP)."""
        (folder / CONFIG_NAME).write_text(self.config.to_json())
        write_processors(folder, self.processors)
        if self.lora is not None:  # only what was trained, and the base it applies to
            write_lora(self, folder, ema_state, state)
            return
        state = {k: v.detach().contiguous().cpu() for k, v in (state or self.state_dict()).items()}
        save_tensors(state, folder / WEIGHTS_NAME, metadata={"format": "pt"})
        if ema_state is not None:
            ema = {k: v.detach().contiguous().cpu() for k, v in ema_state.items()}
            save_tensors(ema, folder / EMA_WEIGHTS_NAME, metadata={"format": "pt"})

    @classmethod
    def from_pretrained(
        cls, directory: str | os.PathLike, device: str | torch.device = "cpu", ema: bool = False,
        merge_lora: bool = True, lora_base: str | os.PathLike | None = None,
    ) -> GigaWorldPolicy:
        """Load a checkpoint folder; `ema=True` takes the EMA weights (training checkpoints have them). A file that
        is missing, cut short or not what its name says is a ValueError (FileNotFoundError) that names it. A checkpoint
        written before processor.json (with normalization.json) loads too (see `data.processor.read_processors`).

        A LoRA checkpoint (lora.json: see `lora.py`) loads onto its base weights (`lora_base`, default the folder it
        records), its adapters merged into them unless `merge_lora` is False (to resume training)."""
        directory = Path(directory)
        is_lora = (directory / LORA_CONFIG).is_file()
        weights = EMA_WEIGHTS_NAME if ema else LORA_WEIGHTS if is_lora else WEIGHTS_NAME
        for name in (CONFIG_NAME, weights):
            if not (directory / name).is_file():
                raise FileNotFoundError(f"{directory} is not a policy checkpoint: {name} is missing")
        processors = read_processors(directory)  # before the weights: a missing file costs no loading
        # Both weight files, also the one not loaded: a checkpoint with a damaged file is damaged, whichever file
        # this run reads (gwp eval reads the EMA, --raw-weights and --resume the other).
        for name in (WEIGHTS_NAME, LORA_WEIGHTS, EMA_WEIGHTS_NAME):
            if (directory / name).is_file():
                check_safetensors(directory / name)
        config = PolicyConfig.from_file(directory / CONFIG_NAME)
        if is_lora:
            policy = read_lora(cls, directory, config, weights, device, lora_base, merge_lora)
            policy.processors = processors
            return policy.eval()
        with torch.device("meta"):
            policy = cls(config)
        try:
            policy.load_state_dict(load_file(str(directory / weights), device=str(device)), assign=True)
        except RuntimeError as error:  # torch lists missing, unexpected and mis-shaped keys, one per line
            raise ValueError(f"{directory / weights} does not hold the weights of the model its {CONFIG_NAME} "
                             f"describes: {' '.join(str(error).split())}") from None
        policy.processors = processors
        return policy.eval()

    @classmethod
    def from_wan(cls, transformer_dir: str | os.PathLike, config: PolicyConfig | None = None) -> GigaWorldPolicy:
        """A policy whose transformer starts from Wan2.2 weights in diffusers' format (e.g. the `transformer`
        folder of Wan2.2-TI2V-5B-Diffusers); only the state/action heads (and an action expert) start fresh. With
        `config=None` the transformer dimensions come from the folder and everything else from the `gwp0` preset."""
        from .wan_weights import load_into, load_wan_state_dict, read_wan_config

        wan = read_wan_config(transformer_dir)
        config = config or PolicyConfig.preset("gwp0").replace(transformer=wan)
        if config.transformer != wan:
            raise ValueError(f"config.transformer {config.transformer} differs from the folder's {wan}")
        policy = cls(config)
        load_into(policy.transformer, load_wan_state_dict(transformer_dir))
        return policy

    # ---- examples -----------------------------------------------------------------------------------
    def example_batch(self, batch_size: int = 2, seed: int = 0) -> dict[str, Any]:
        """A valid random training batch for this policy's config (see `inputs.py` for the keys)."""
        cfg, g = self.config, torch.Generator().manual_seed(seed)
        height, width = cfg.image_size
        embodiment = torch.randint(len(cfg.embodiments), (batch_size,), generator=g)
        state_dims = torch.tensor([e.state_dim for e in cfg.embodiments])[embodiment]
        action_dims = torch.tensor([e.action_dim for e in cfg.embodiments])[embodiment]
        state = torch.rand(batch_size, cfg.max_state_dim, generator=g) * 2 - 1
        actions = torch.rand(batch_size, cfg.chunk_size, cfg.max_action_dim, generator=g) * 2 - 1
        pad_from = torch.randint(cfg.chunk_size // 2, cfg.chunk_size + 1, (batch_size,), generator=g)
        text_lengths = torch.randint(1, cfg.text_len + 1, (batch_size,), generator=g)
        return {
            "image": torch.rand(batch_size, 3, height, width, generator=g) * 2 - 1,
            "future_images": torch.rand(batch_size, cfg.num_future_frames, 3, height, width, generator=g) * 2 - 1,
            "future_is_pad": torch.zeros(batch_size, cfg.num_future_frames, dtype=torch.bool),
            "state": state * (torch.arange(cfg.max_state_dim) < state_dims[:, None]),
            "actions": actions * (torch.arange(cfg.max_action_dim) < action_dims[:, None, None]),
            "action_is_pad": torch.arange(cfg.chunk_size) >= pad_from[:, None],
            "embodiment": embodiment,
            "text_embeds": torch.randn(batch_size, cfg.text_len, cfg.transformer.text_dim, generator=g),
            "text_mask": torch.arange(cfg.text_len) < text_lengths[:, None],
        }
