"""Training: embodied pre-training (video loss only) and post-training (video + action losses).

    gwp train --dataset DIR --preset tiny --steps N --output-dir OUT [--resume]

Runs on one CPU as is, and on many GPUs under `accelerate launch` or `torchrun` (DDP or FSDP2, bf16), because
everything distributed goes through HF accelerate (which shards only on accelerators: on CPU processes FSDP2 is handed
to it, see `_shard_across_cpu_processes`). Resume is exact: the sample order is a pure function of
(seed, position), the flow-matching noise of step s is drawn from a generator seeded by (seed, s, rank, micro-step),
and optimizer, scheduler, EMA and RNG states are restored, with the minutes trained (a --max-minutes budget and a
time-cosine learning rate count those of the runs before).

Output folder:
    OUT/train_config.json                    the resolved configuration of the run
    OUT/checkpoints/                         <step>/ policy folders with their training state, and `last`
                                             (see checkpoints.py)
    OUT/logs/                                TensorBoard event files
    OUT/metrics.jsonl                        the same scalars, one JSON object per logged step; losses are
                                             means over the steps since the previous log line (a resumed run
                                             replaces the lines logged after its checkpoint)
    OUT/validation/step-<step>.png           predicted vs true future frames of held-out samples
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch
from safetensors.torch import load_file
from torch.distributed.tensor import DTensor, distribute_tensor
from torch.utils.data import ConcatDataset, DataLoader, Subset

from .atomic import write_text_atomically
from .checkpoints import CHECKPOINTS, TRAINING_STATE, latest_checkpoint, resume_policy, save_checkpoint, tidy_output
from .config import ActionExpertConfig, EmbodimentSpec, PolicyConfig
from .data import DataConfig, LeRobotDataset, PolicyDataset
from .data.latents import LatentDataset
from .data.sampler import ResumableSampler
from .data.text_embeddings import TextEmbeddingDataset
from .data.training import ACTION, STATE
from .encoders.frozen import load_codec, load_text_encoder
from .model.lora import LORA_CONFIG, add_lora, cast_frozen, trained_state
from .model.policy import EMA_WEIGHTS_NAME, GigaWorldPolicy
from .model.wan import TransformerBlock


@dataclass
class OptimConfig:
    lr: float = 1e-4
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.95)
    grad_clip: float = 1.0  # max gradient norm; 0 turns clipping off
    warmup_steps: int = 100
    # after warm-up: "cosine" over the steps, "time-cosine" over the --max-minutes budget (for a run limited by time,
    # whose step count is not known in advance; the warm-up ramp multiplies it), or "constant"
    schedule: Literal["cosine", "time-cosine", "constant"] = "cosine"
    min_lr_ratio: float = 0.1  # a cosine decays to lr * min_lr_ratio
    decay_steps: int | None = None  # length of the step cosine; None = the run's --steps


# Policy-config fields a run may override: the losses, and the observation encoder (not when starting from --init).
LOSS_OVERRIDES = ("video_loss_weight", "action_loss_weight", "shared_flow_time", "clean_action_prob",
                  "action_prefix_prob", "max_action_prefix")
ARCHITECTURE_OVERRIDES = ("observation_encoder", "cnn_widths")
ARCHITECTURE = (*ARCHITECTURE_OVERRIDES, "action_expert")  # what an --init run keeps (the expert: --action-expert-dim)


@dataclass
class TrainConfig:
    dataset: tuple[str, ...] = ()  # one or more LeRobot v3.0 folders
    dataset_weights: tuple[float, ...] = ()  # sampling weight of each dataset (default: by size)
    latents: tuple[str, ...] = ()  # precomputed latents of each dataset (`gwp precompute-latents`), same order
    # stored instruction embeddings of each dataset (`gwp precompute-text`), same order: no text encoder is loaded
    text_embeddings: tuple[str, ...] = ()
    preset: str = "tiny"
    policy_config: str | None = None  # a config.json to use instead of the preset
    stage: Literal["pretrain", "posttrain"] = "posttrain"
    init: str | None = None  # checkpoint folder to start from (e.g. a pretrain run's); its architecture is kept
    init_wan: str | None = None  # Wan2.2 transformer folder (diffusers' or the original layout) to start the DiT from
    output_dir: str = "outputs/train"
    resume: bool = False
    steps: int = 1000
    # stop (and checkpoint) after this many minutes of training, even before `steps`; counted over resumed runs too
    max_minutes: float | None = None
    batch_size: int = 8  # per process and micro-step
    grad_accum: int = 1
    num_workers: int = 2
    seed: int = 0
    mixed_precision: Literal["no", "bf16", "fp16"] = "no"
    gradient_checkpointing: bool = False
    # LoRA (model/lora.py): adapters of this rank on the Wan blocks' projections, the heads trained in full, the rest
    # frozen (in bf16 with --mixed-precision bf16); needs base weights: --init-wan or --init. 0 = full fine-tuning.
    lora_rank: int = 0
    lora_alpha: float | None = None  # LoRA scale alpha / rank; None = the rank (scale 1)
    ema_decay: float = 0.999  # 0 turns EMA off
    save_every: int = 500
    keep_checkpoints: int = 3
    log_every: int = 10
    log_with: Literal["tensorboard", "wandb", "none"] = "tensorboard"
    val_every: int = 0  # 0 = no periodic validation
    val_episodes: int = 0  # last episodes of the first dataset held out for validation
    val_samples: int = 8
    video_loss_weight: float | None = None  # overrides of the policy config, for ablations
    action_loss_weight: float | None = None
    shared_flow_time: bool | None = None
    clean_action_prob: float | None = None
    action_prefix_prob: float | None = None  # real-time chunking: see PolicyConfig.action_prefix_prob
    max_action_prefix: int | None = None
    observation_encoder: Literal["patch", "cnn"] | None = None  # "cnn" with video_loss_weight 0: the baseline
    cnn_widths: tuple[int, ...] | None = None
    action_expert_dim: int | None = None  # an action expert this wide for the action tokens (ActionExpertConfig)
    action_expert_ffn_dim: int | None = None  # its feed-forward width (default 4 x its width)
    text_encoder: str = "minilm"  # "minilm", "none" (datasets must not need one) or a umT5 folder (Wan2.2's)
    vae: str | None = None  # Wan2.2 VAE folder, for a wan_vae policy (not needed with --latents and no validation)
    optim: OptimConfig = field(default_factory=OptimConfig)
    data: DataConfig = field(default_factory=DataConfig)

    def __post_init__(self) -> None:
        if isinstance(self.dataset, str):
            self.dataset = (self.dataset,)
        if self.optim.schedule == "time-cosine" and not (self.max_minutes or 0) > 0:
            raise ValueError("--optim.schedule time-cosine decays over the time budget: give --max-minutes too")
        if self.dataset_weights and len(self.dataset_weights) != len(self.dataset):
            raise ValueError(f"{len(self.dataset_weights)} dataset weights for {len(self.dataset)} datasets")
        if self.latents and len(self.latents) != len(self.dataset):
            raise ValueError(f"{len(self.latents)} latent folders for {len(self.dataset)} datasets")
        if self.text_embeddings and len(self.text_embeddings) != len(self.dataset):
            raise ValueError(f"{len(self.text_embeddings)} text embedding folders for {len(self.dataset)} datasets")
        if self.action_expert_ffn_dim is not None and self.action_expert_dim is None:
            raise ValueError("--action-expert-ffn-dim sizes the action expert: give its --action-expert-dim too")
        if self.init and self.init_wan:
            raise ValueError("give --init (a policy checkpoint) or --init-wan (Wan2.2 transformer weights), not both")
        if self.lora_rank < 0 or (self.lora_alpha is not None and (self.lora_alpha <= 0 or not self.lora_rank)):
            raise ValueError(f"--lora-rank must be >= 0 and --lora-alpha > 0 with a rank, got {self.lora_rank} and "
                             f"{self.lora_alpha}")
        if self.lora_rank and not (self.init or self.init_wan):
            raise ValueError("LoRA adapts pre-trained weights: give them with --init-wan (Wan2.2) or --init (a policy "
                             "checkpoint)")

    def policy(self, base: PolicyConfig | None = None) -> PolicyConfig:
        """The policy config: `base` (an --init checkpoint's), else --policy-config, else the preset; then the
        overrides of this run. An --init checkpoint's architecture is kept: overriding it is an error."""
        if base is not None:
            config = base
        elif self.policy_config:
            config = PolicyConfig.from_file(self.policy_config)
        else:
            config = PolicyConfig.preset(self.preset)
        overrides = {k: getattr(self, k) for k in (*LOSS_OVERRIDES, *ARCHITECTURE_OVERRIDES)
                     if getattr(self, k) is not None}
        if self.action_expert_dim is not None:
            overrides["action_expert"] = ActionExpertConfig(
                self.action_expert_dim, self.action_expert_ffn_dim or 4 * self.action_expert_dim)
        overridden = config.replace(**overrides)
        changed = [k for k in ARCHITECTURE if getattr(overridden, k) != getattr(config, k)]
        if base is not None and changed:
            raise ValueError(f"--init {self.init} keeps its checkpoint's architecture; this run would change "
                             + ", ".join(f"{k} from {getattr(config, k)} to {getattr(overridden, k)}" for k in changed))
        return overridden

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2)

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> TrainConfig:
        """Options from a YAML or JSON file (e.g. a run's train_config.json); unknown keys are an error."""
        import yaml

        data = yaml.safe_load(Path(path).read_text()) or {}
        unknown = set(data) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"{path}: unknown training options {sorted(unknown)}")
        defaults = cls()
        for name in ("optim", "data"):
            if name in data:
                data[name] = dataclasses.replace(getattr(defaults, name), **data[name])
        return cls(**data)


class EMA:
    """Exponential moving average of the trainable weights (fp32, on the weights' device).

    The decay warms up as min(decay, (1 + n) / (10 + n)) at optimiser step n, so the average covers roughly the last
    tenth of training until it reaches `decay`. Without the warm-up a short run's average keeps a share decay^n of
    the random initial weights (13% after 2000 steps at 0.999), which spoils it.
    """

    def __init__(self, model: torch.nn.Module, decay: float, keys: set[str] | None = None):
        """keys: the state_dict entries to average (None: all); under LoRA the trained ones, not a copy of the base."""
        self.decay = decay
        self.shadow = {k: v.detach().float().clone() for k, v in model.state_dict().items()
                       if keys is None or k in keys}

    def full_weights(self) -> dict[str, torch.Tensor]:
        """The average as whole tensors. Under FSDP it is held in shards like the weights: every process must call
        this (the shards are gathered)."""
        return {k: v.full_tensor() if isinstance(v, DTensor) else v for k, v in self.shadow.items()}

    def decay_at(self, step: int) -> float:
        return min(self.decay, (1 + step) / (10 + step))

    @torch.no_grad()
    def update(self, model: torch.nn.Module, step: int) -> None:
        """Average in the weights after optimiser step `step` (0 for the first)."""
        weight = 1 - self.decay_at(step)
        state = model.state_dict()
        for key, average in self.shadow.items():
            average.lerp_(state[key].detach().float(), weight)

    def load_shadow(self, folder: Path) -> None:
        """Resume the average from a checkpoint folder's ema.safetensors (its only copy)."""
        if not (folder / EMA_WEIGHTS_NAME).is_file():
            raise FileNotFoundError(f"{folder / EMA_WEIGHTS_NAME} is missing (runs with --ema-decay 0 write none): "
                                    f"resume with --ema-decay 0")
        stored = load_file(str(folder / EMA_WEIGHTS_NAME))
        if stored.keys() != self.shadow.keys():
            raise ValueError(f"{folder / EMA_WEIGHTS_NAME} does not hold the EMA weights of this model")
        self.shadow = {k: _shaped_like(stored[k], v) for k, v in self.shadow.items()}


def _shaped_like(whole: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """`whole` in the dtype and device of `like`, and in its shards if `like` is a shard (FSDP)."""
    if isinstance(like, DTensor):
        return distribute_tensor(whole.to(like.dtype), like.device_mesh, like.placements)
    return whole.to(like)


class Progress:
    """Training position, checkpointed with the rest of the training state."""

    def __init__(self) -> None:
        self.step = 0
        self.samples = 0  # global samples consumed: the data position
        self.minutes = 0.0  # training wall time so far, over every run that resumed this one
        self._clock = (0.0, time.monotonic())  # (minutes, monotonic seconds) when this run's clock started

    def start_clock(self) -> None:
        """Count `minutes` on from here (call when the loop starts: set-up and loading are not training time)."""
        self._clock = (self.minutes, time.monotonic())

    def tick(self) -> None:
        minutes, started = self._clock
        self.minutes = minutes + (time.monotonic() - started) / 60

    def state_dict(self) -> dict:
        return {"step": self.step, "samples": self.samples, "minutes": self.minutes}

    def load_state_dict(self, state: dict) -> None:
        # checkpoints from before the clock was kept have no minutes: their time is not known, so it starts at 0
        self.step, self.samples, self.minutes = int(state["step"]), int(state["samples"]), state.get("minutes", 0.0)


class LossMeans:
    """Sums of the per-step losses between two log lines; `pop` gives their means over the steps and processes and
    starts a new interval, so a log line describes every step since the previous one, not one noisy batch."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = {}
        self.steps = 0

    def add(self, losses: dict[str, float]) -> None:
        for name, value in losses.items():
            self.sums[name] = self.sums.get(name, 0.0) + value
        self.steps += 1

    def pop(self, accelerator) -> dict[str, float]:
        names = sorted(self.sums)
        means = torch.tensor([self.sums[n] / self.steps for n in names], device=accelerator.device)
        if accelerator.num_processes > 1:
            means = accelerator.reduce(means, reduction="mean")
        self.sums, self.steps = {}, 0
        return dict(zip(names, means.tolist(), strict=True))


def lr_lambda(optim: OptimConfig, total_steps: int, progress: Progress,
              budget_minutes: float | None) -> Callable[[int], float]:
    """The learning-rate factor of each step. "time-cosine" reads the training minutes from `progress` and decays
    over `budget_minutes`."""
    def cosine(fraction: float) -> float:
        return optim.min_lr_ratio + (1 - optim.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, fraction)))

    def factor(step: int) -> float:
        warmup = min(1.0, (step + 1) / optim.warmup_steps) if optim.warmup_steps > 0 else 1.0
        if optim.schedule == "time-cosine":
            return warmup * cosine(progress.minutes / budget_minutes)
        if step < optim.warmup_steps:
            return warmup
        if optim.schedule == "constant":
            return 1.0
        return cosine((step - optim.warmup_steps) / max(1, total_steps - optim.warmup_steps))

    return factor


def _robots(cfg: TrainConfig) -> list[tuple[str | None, int | None, int | None]]:
    """(robot_type, state size, action size) of each dataset, from its info.json (None where it has none)."""
    robots = []
    for root in cfg.dataset:
        info = LeRobotDataset.read_info(root)
        features = info["features"]
        robots.append((info.get("robot_type"), features[STATE]["shape"][0] if STATE in features else None,
                       features[ACTION]["shape"][0] if ACTION in features else None))
    return robots


def sized_to_data(config: PolicyConfig, cfg: TrainConfig, say: Callable[[str], None]) -> PolicyConfig:
    """A new policy's robots, from the datasets, as a LeRobot policy takes its features from the dataset. Data of one
    robot: its embodiment (`--data.embodiment`) takes the data's robot_type as its name and the data's state and action
    sizes (e.g. Meta-World with the goal in the state has 7 state numbers, the presets' robot 4), the padded sizes
    grown to fit. Data of several robots (their info.json `robot_type`s differ): one embodiment per robot, named by its
    robot_type, in the order the datasets come, and the padded sizes grown to the largest. An --init checkpoint keeps
    its robots: there data of other sizes are an error. `say` reports a change."""
    if not cfg.dataset or not 0 <= cfg.data.embodiment < len(config.embodiments):
        return config  # (a bad embodiment id is reported where the data meet the policy)
    robots = _robots(cfg)
    if len({robot for robot, _, _ in robots}) > 1:
        return _one_embodiment_per_robot(config, cfg, robots, say)
    robot_type, state_dim, action_dim = robots[0]
    robot = config.embodiments[cfg.data.embodiment]
    fitted = EmbodimentSpec(robot_type or robot.name, state_dim or robot.state_dim, action_dim or robot.action_dim)
    if fitted == robot:
        return config
    say(f"embodiment {fitted.name!r}: state {fitted.state_dim}, action {fitted.action_dim} numbers, from "
        f"{cfg.dataset[0]} (the config said {robot.name!r}, {robot.state_dim}, {robot.action_dim})")
    embodiments = list(config.embodiments)
    embodiments[cfg.data.embodiment] = fitted
    return config.replace(embodiments=tuple(embodiments), max_state_dim=max(config.max_state_dim, fitted.state_dim),
                          max_action_dim=max(config.max_action_dim, fitted.action_dim))


def _one_embodiment_per_robot(config: PolicyConfig, cfg: TrainConfig, robots: list, say) -> PolicyConfig:
    """`config` with one embodiment per distinct robot of `robots` (`_robots`), each robot's sizes checked equal."""
    specs: dict[str, EmbodimentSpec] = {}
    for root, (robot, state_dim, action_dim) in zip(cfg.dataset, robots, strict=True):
        if robot is None:
            raise ValueError(f"{root} names no robot_type in its info.json, and the other datasets are of other "
                             f"robots ({sorted({r for r, _, _ in robots if r})}): give it one to tell them apart")
        spec = EmbodimentSpec(robot, state_dim or 0, action_dim or 0)
        known = specs.setdefault(robot, spec)
        if (known.state_dim, known.action_dim) != (spec.state_dim, spec.action_dim):
            raise ValueError(f"{root} is robot {robot!r} with state {state_dim} and action {action_dim} numbers, "
                             f"another dataset of that robot has {known.state_dim} and {known.action_dim}")
    embodiments = tuple(specs.values())
    say("one embodiment per robot: " + ", ".join(f"{e.name!r} (state {e.state_dim}, action {e.action_dim})"
                                                  for e in embodiments))
    return config.replace(embodiments=embodiments,
                          max_state_dim=max(config.max_state_dim, *(e.state_dim for e in embodiments)),
                          max_action_dim=max(config.max_action_dim, *(e.action_dim for e in embodiments)))


def dataset_embodiments(config: PolicyConfig, cfg: TrainConfig) -> list[int]:
    """The embodiment id of each dataset: `--data.embodiment` for data of one robot; for data of several, the
    policy's embodiment named by each dataset's robot_type (see `sized_to_data`)."""
    robots = [robot for robot, _, _ in _robots(cfg)]
    if len(set(robots)) == 1:
        return [cfg.data.embodiment] * len(robots)
    names = [e.name for e in config.embodiments]
    unknown = sorted({robot for robot in robots if robot not in names}, key=str)
    if unknown:
        raise ValueError(f"the datasets are of robots {unknown} that the policy has no embodiment for (it has "
                         f"{names})")
    return [names.index(robot) for robot in robots]


def recorded_environments(cfg: TrainConfig, config: PolicyConfig) -> dict[str, dict]:
    """{embodiment name: how its first training dataset that `gwp collect` recorded was recorded (a `Recording` as
    JSON)}: what `gwp eval` evaluates the checkpoint in when it is given no dataset or settings."""
    from .envs.recording import RECORDING_FILE, read_recording

    found: dict[str, dict] = {}
    for root, embodiment in zip(cfg.dataset, dataset_embodiments(config, cfg), strict=True):
        name = config.embodiments[embodiment].name
        if name not in found and (Path(root) / "meta" / RECORDING_FILE).is_file():
            found[name] = read_recording(root).to_dict()
    return found


def build_datasets(cfg: TrainConfig, policy: GigaWorldPolicy) -> tuple[ConcatDataset, Subset | None, torch.Tensor]:
    """Training samples of all datasets (first dataset's last `val_episodes` held out), validation samples, and
    per-sample sampling weights. Each dataset is its robot's embodiment (`dataset_embodiments`); datasets of the same
    embodiment share one processor: the policy's (an --init or resumed checkpoint's), else the one fitted to the
    first of them (a video-only stage fits none for actions)."""
    if not cfg.dataset:
        raise ValueError("no training data: pass --dataset DIR (one or more)")
    parts, validation = [], None
    processors = dict(policy.processors)
    for number, (root, embodiment) in enumerate(zip(cfg.dataset, dataset_embodiments(policy.config, cfg),
                                                    strict=True)):
        name = policy.config.embodiments[embodiment].name
        known = processors.get(name)
        samples = PolicyDataset(LeRobotDataset(root), policy.config,
                                dataclasses.replace(cfg.data, embodiment=embodiment), processor=known)
        processors[name] = samples.processor
        if cfg.stage == "pretrain" and (known is None or known.action is None):
            # a video-only stage learns no actions: post-training takes their statistics from its own data (a
            # checkpoint's, from an earlier post-training, are kept)
            processors[name] = dataclasses.replace(samples.processor, action=None, delta_action_dims=())
        if cfg.latents:
            samples = LatentDataset(samples, cfg.latents[number])
        if cfg.text_embeddings:
            samples = TextEmbeddingDataset(samples, LeRobotDataset(root), cfg.text_embeddings[number],
                                           policy.config.text_len, policy.config.transformer.text_dim)
        indices = torch.arange(len(samples))
        if number == 0 and cfg.val_episodes:
            episodes = LeRobotDataset(root).episodes
            if cfg.val_episodes >= len(episodes):
                raise ValueError(f"cannot hold out {cfg.val_episodes} of {len(episodes)} episodes for validation")
            first_val = episodes[-cfg.val_episodes].start
            validation = Subset(samples, range(first_val, len(samples)))
            indices = indices[:first_val]
        parts.append(Subset(samples, indices.tolist()))
    policy.processors = processors
    weights = cfg.dataset_weights or tuple(float(len(p)) for p in parts)
    per_sample = torch.cat([torch.full((len(p),), w / len(p)) for p, w in zip(parts, weights, strict=True)])
    return ConcatDataset(parts), validation, per_sample


def collate(samples: list[dict], with_actions: bool = True) -> dict:
    """A batch of samples, whose state (S,) and actions (H, A) may be of robots of different sizes: zero-padded to
    the largest (the model masks each sample's padding by its embodiment). Without actions (stage 1 learns the video
    alone, even on robot data) the actions are left out. (Module level, so that loader workers started with "spawn",
    the default on macOS and Windows, can unpickle it.)"""
    for key in ("state", "actions"):
        if key in samples[0]:
            size = max(sample[key].shape[-1] for sample in samples)
            samples = [{**s, key: torch.nn.functional.pad(s[key], (0, size - s[key].shape[-1]))} for s in samples]
    batch = torch.utils.data.default_collate(samples)
    if not with_actions:
        batch.pop("actions", None)
        batch.pop("action_is_pad", None)
    return batch


def _trim_metrics_log(metrics_log: Path, last_step: int) -> None:
    """Drop the lines logged after the checkpoint a run starts from (step 0 for a new run): the run logs those steps
    again. A last line without its newline is a write cut short by a kill, and goes too."""
    if metrics_log.exists():
        lines = [line for line in metrics_log.read_text().splitlines(keepends=True) if line.endswith("\n")]
        write_text_atomically(metrics_log, "".join(line for line in lines if json.loads(line)["step"] <= last_step))


def _latest_clock(accelerator, minutes: float) -> float:
    """The most minutes any process has trained: every rank then sets the same learning rate and stops at the same
    step."""
    if accelerator.num_processes == 1:
        return minutes
    value = torch.tensor([minutes], device=accelerator.device)
    return float(accelerator.reduce(value, reduction="max").item())


@dataclass
class TrainResult:
    checkpoint: Path  # folder of the final checkpoint
    policy: GigaWorldPolicy  # the trained policy of this process (its raw, non-EMA weights)
    num_processes: int  # how many processes trained it together (data-parallel)


def warn_if_too_narrow_for_video(config: PolicyConfig) -> None:
    """The network predicts the velocity noise - x0 of each video token, so it has to carry the token's noise from
    input to output: a transformer narrower than a token cannot, and its video loss stalls with noisy frames."""
    network = config.transformer
    if config.video_loss_weight > 0 and network.inner_dim < network.token_values:
        warnings.warn(f"the transformer is {network.inner_dim} wide, narrower than a video token "
                      f"({network.token_values} values): it cannot learn the video velocity (the video loss will "
                      f"stall and sampled frames stay noisy); make num_attention_heads x attention_head_dim at least "
                      f"{network.token_values}", stacklevel=2)


def train(cfg: TrainConfig) -> TrainResult:
    """Run training to `cfg.steps` (or `cfg.max_minutes`); each step of the set-up is a function of its own."""
    output_dir = Path(cfg.output_dir)
    accelerator = _make_accelerator(cfg, output_dir)
    resume_from = _checkpoint_to_resume(cfg, output_dir)
    policy = _build_policy(cfg, resume_from, say=accelerator.print)
    if accelerator.is_main_process:  # only now: a damaged resume checkpoint must leave the earlier ones unpruned
        tidy_output(output_dir, cfg.keep_checkpoints)
    accelerator.wait_for_everyone()
    _attach_frozen_parts(policy, cfg)
    train_set, val_set, weights = build_datasets(cfg, policy)
    progress = Progress()
    optimizer, scheduler = _make_optimizer(policy, cfg, progress)
    model, optimizer = _prepare(accelerator, policy, optimizer, scheduler, progress, resume_from)
    unwrapped: GigaWorldPolicy = accelerator.unwrap_model(model)
    ema = _make_ema(cfg, unwrapped, resume_from)
    environments = recorded_environments(cfg, unwrapped.config)
    batches = iter(_make_loader(cfg, train_set, weights, progress, accelerator))
    _start_logging(cfg, accelerator, output_dir, progress)

    bar = _ProgressBar(cfg, progress, disable=not accelerator.is_main_process)
    interval = LossMeans()  # losses since the last log line
    progress.start_clock()
    while progress.step < cfg.steps:
        losses = _optimizer_step(cfg, accelerator, model, optimizer, batches, progress.step)
        if ema:
            ema.update(unwrapped, progress.step)
        progress.step += 1
        progress.samples += cfg.batch_size * cfg.grad_accum * accelerator.num_processes
        progress.tick()
        if cfg.max_minutes is not None:
            progress.minutes = _latest_clock(accelerator, progress.minutes)
        scheduler.step()  # after the tick: a time-cosine sets the next step's rate from the minutes trained
        bar.update(progress, losses["loss"])
        interval.add(losses)
        if progress.step % cfg.log_every == 0 or progress.step == 1:
            _log(cfg, accelerator, output_dir, progress.step, interval.pop(accelerator), scheduler.get_last_lr()[0])
        if cfg.val_every and val_set is not None and progress.step % cfg.val_every == 0:
            _validate_and_log(cfg, accelerator, unwrapped, val_set, output_dir, progress.step)
        out_of_time = cfg.max_minutes is not None and progress.minutes > cfg.max_minutes
        if progress.step % cfg.save_every == 0 or progress.step == cfg.steps or out_of_time:
            save_checkpoint(accelerator, model, ema.full_weights() if ema else None, output_dir, progress.step,
                            cfg.keep_checkpoints, environments)
        if out_of_time:
            break
    bar.close()
    for tracker in accelerator.trackers:  # not end_training(): the process group stays for a next train() call
        tracker.finish()
    return TrainResult(output_dir / CHECKPOINTS / f"{progress.step:06d}", unwrapped, accelerator.num_processes)


def _make_accelerator(cfg: TrainConfig, output_dir: Path):
    from accelerate import Accelerator, DistributedDataParallelKwargs
    from accelerate.utils import DistributedType, ProjectConfiguration

    accelerator = Accelerator(
        # Without a GPU, accelerate only forms a process group (gloo) under torchrun when told it runs on the CPU.
        cpu=not torch.cuda.is_available(),
        gradient_accumulation_steps=cfg.grad_accum,
        mixed_precision=cfg.mixed_precision,
        log_with=None if cfg.log_with == "none" else cfg.log_with,
        project_config=ProjectConfiguration(project_dir=str(output_dir), logging_dir=str(output_dir / "logs")),
        # Video-only batches leave the action heads unused; DDP must not wait for their gradients.
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)],
        step_scheduler_with_optimizer=False,
    )
    if os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true" and (
            accelerator.distributed_type != DistributedType.FSDP):
        _shard_across_cpu_processes(accelerator)
    if accelerator.distributed_type == DistributedType.FSDP and accelerator.state.fsdp_plugin.fsdp_version != 2:
        # FSDP1 gathers a block's weights for its forward alone; the policy also runs blocks in pieces
        raise ValueError("FSDP here needs FSDP2 (fsdp_version: 2 in the accelerate config, or FSDP_VERSION=2): the "
                         "policy calls its blocks outside their forward (text keys/values, the action expert), which "
                         "FSDP2 can be told to gather for and FSDP1 cannot")
    return accelerator


def _shard_across_cpu_processes(accelerator) -> None:
    """accelerate shards only on GPUs (and NPU/XPU/HPU): asked for FSDP on CPU processes it would run DDP without a
    word. torch's FSDP2 (`fully_shard`) runs over gloo on CPUs, so hand accelerate an FSDP2 plugin (the FSDP_* settings
    of `accelerate launch` apply; each transformer block is a unit unless they say otherwise) and let it shard."""
    from accelerate import PartialState
    from accelerate.utils import DistributedType, FullyShardedDataParallelPlugin

    if accelerator.distributed_type != DistributedType.MULTI_CPU:
        raise ValueError(f"FSDP was asked for (ACCELERATE_USE_FSDP) but accelerate runs "
                         f"{accelerator.distributed_type.value}: sharding needs several processes (torchrun)")
    plugin = FullyShardedDataParallelPlugin(  # FSDP2 whatever FSDP_VERSION says: FSDP1 wants a GPU
        fsdp_version=2, auto_wrap_policy=os.environ.get("FSDP_AUTO_WRAP_POLICY", "transformer_based_wrap"))
    # AcceleratorState copies PartialState's fields each time it is made: both must say FSDP
    PartialState().distributed_type = accelerator.state.distributed_type = DistributedType.FSDP
    accelerator.state.fsdp_plugin = plugin


def _checkpoint_to_resume(cfg: TrainConfig, output_dir: Path) -> Path | None:
    """The checkpoint --resume continues from; a new run must not write over an earlier one's checkpoints."""
    latest = latest_checkpoint(output_dir)
    if cfg.resume and latest is None:
        raise FileNotFoundError(f"--resume: no checkpoint under {output_dir / CHECKPOINTS}")
    if not cfg.resume and latest is not None:
        raise FileExistsError(f"{output_dir} already has checkpoints: pass --resume or choose a new --output-dir")
    return latest if cfg.resume else None


def _build_policy(cfg: TrainConfig, resume_from: Path | None, say: Callable[[str], None]) -> GigaWorldPolicy:
    """The policy to train (`_starting_policy`), with LoRA adapters when --lora-rank asks for them; a LoRA policy's
    frozen weights are stored in bf16 under --mixed-precision bf16. Whatever starts random (a new policy, new heads,
    the adapters) is drawn from `cfg.seed`: the same on every process, as sharding each process's own copy needs."""
    torch.manual_seed(cfg.seed)
    policy = _starting_policy(cfg, resume_from, say)
    rank = policy.lora.rank if policy.lora is not None else 0
    if resume_from is not None and rank != cfg.lora_rank:
        raise ValueError(f"{resume_from} was trained with --lora-rank {rank}, this run asks for {cfg.lora_rank}")
    if resume_from is None and cfg.lora_rank:
        base = ("init_wan", cfg.init_wan) if cfg.init_wan else ("init", cfg.init)
        add_lora(policy, cfg.lora_rank, cfg.lora_alpha or cfg.lora_rank, (base[0], str(Path(base[1]).resolve())))
    if policy.lora is not None and cfg.mixed_precision == "bf16":
        cast_frozen(policy, torch.bfloat16)
    return policy


def _starting_policy(cfg: TrainConfig, resume_from: Path | None, say: Callable[[str], None]) -> GigaWorldPolicy:
    """The resumed checkpoint's policy (a LoRA one with its adapters), an --init checkpoint's (its architecture and
    processors, with this run's loss settings), Wan2.2's transformer weights (--init-wan), or a new one sized to the
    data."""
    if resume_from is not None:
        return resume_policy(Path(cfg.output_dir), resume_from)
    if cfg.init and cfg.lora_rank and (Path(cfg.init) / LORA_CONFIG).is_file():
        raise ValueError(f"--init {cfg.init} is a LoRA checkpoint: merge it (gwp merge-lora) and start the new "
                         f"adapters from the merged folder")
    if cfg.init:
        init = GigaWorldPolicy.from_pretrained(cfg.init)
        policy = GigaWorldPolicy(cfg.policy(base=init.config))
        policy.load_state_dict(init.state_dict())
        policy.processors = init.processors
        return policy
    config = sized_to_data(cfg.policy(), cfg, say=say)  # says so on the main process only
    return GigaWorldPolicy.from_wan(cfg.init_wan, config) if cfg.init_wan else GigaWorldPolicy(config)


def _attach_frozen_parts(policy: GigaWorldPolicy, cfg: TrainConfig) -> None:
    """Training mode, and the frozen parts the data need: the text encoder unless stored instruction embeddings
    stand in for the instructions, and the codec unless stored latents stand in for the images (then only validation
    decodes frames)."""
    policy.train()
    warn_if_too_narrow_for_video(policy.config)
    policy.transformer.gradient_checkpointing = cfg.gradient_checkpointing
    policy.text_encoder = None if cfg.text_embeddings else load_text_encoder(cfg.text_encoder, policy.config)
    if cfg.vae or not cfg.latents or cfg.val_every:
        policy.codec = load_codec(policy.config, cfg.vae)


def decays(name: str, parameter: torch.nn.Parameter) -> bool:
    """Whether weight decay applies: to weight matrices, which it pulls towards zero. On biases, norm gains and the
    adaLN modulation table (learned offsets of shift, scale and gate) it would only pull the model towards no shift
    and no gain, which is not a simpler model (nanoGPT's rule)."""
    return parameter.ndim >= 2 and "scale_shift_table" not in name


def _make_optimizer(policy: GigaWorldPolicy, cfg: TrainConfig, progress: Progress):
    named = [(n, p) for n, p in policy.named_parameters() if p.requires_grad]
    groups = [{"params": [p for n, p in named if decays(n, p)], "weight_decay": cfg.optim.weight_decay},
              {"params": [p for n, p in named if not decays(n, p)], "weight_decay": 0.0}]
    optimizer = torch.optim.AdamW(groups, lr=cfg.optim.lr, betas=cfg.optim.betas)
    factor = lr_lambda(cfg.optim, cfg.optim.decay_steps or cfg.steps, progress, cfg.max_minutes)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    return optimizer, scheduler


def _prepare(accelerator, policy: GigaWorldPolicy, optimizer, scheduler, progress: Progress,
             resume_from: Path | None):
    """Wrap model and optimiser for the processes; on resume, load the training state."""
    model, optimizer = accelerator.prepare(policy, optimizer)
    if accelerator.is_fsdp2:
        _gather_blocks_at_every_entry(model)
    accelerator.register_for_checkpointing(scheduler, progress)
    # The checkpoint folder already holds the weights (model.safetensors, read above on resume) and the EMA
    # (ema.safetensors): training_state/ keeps only what is not there, instead of a second copy of each. (Under
    # FSDP accelerate still writes its sharded model there, which a sharded resume needs.)
    accelerator.register_save_state_pre_hook(lambda models, weights, output_dir: weights.clear())
    accelerator.register_load_state_pre_hook(lambda models, input_dir: models.clear())
    if resume_from is not None:
        accelerator.load_state(str(resume_from / TRAINING_STATE))
    return model, optimizer


def _make_ema(cfg: TrainConfig, policy: GigaWorldPolicy, resume_from: Path | None) -> EMA | None:
    """The weights' moving average (of the trained ones only, under LoRA), made after `_prepare` so that under FSDP
    it is sharded as they are; on resume, read back."""
    if cfg.ema_decay <= 0:
        return None
    ema = EMA(policy, cfg.ema_decay, set(trained_state(policy)) if policy.lora is not None else None)
    if resume_from is not None:
        ema.load_shadow(resume_from)
    return ema


def _gather_blocks_at_every_entry(model: torch.nn.Module) -> None:
    """FSDP2 gathers a block's weights for its `forward` only; the policy also calls it in pieces (the text keys/values
    once per instruction, the action expert's joint attention)."""
    from torch.distributed.fsdp import FSDPModule, register_fsdp_forward_method

    # The pieces hand back views (keys/values split into heads) that nothing modifies in place: the warning that an
    # in-place op on them would skip a gather does not apply.
    warnings.filterwarnings("ignore", message="FSDP2-wrapped module .* returned a view tensor")
    for module in model.modules():
        if isinstance(module, TransformerBlock) and isinstance(module, FSDPModule):
            for name in TransformerBlock.ENTRY_POINTS:
                register_fsdp_forward_method(module, name)


def _make_loader(cfg: TrainConfig, train_set: ConcatDataset, weights: torch.Tensor, progress: Progress,
                 accelerator) -> DataLoader:
    """Batches from the data position `progress.samples` on (the order is a pure function of seed and position)."""
    sampler = ResumableSampler(len(train_set), cfg.seed, progress.samples, accelerator.process_index,
                               accelerator.num_processes, weights if cfg.dataset_weights else None)
    return DataLoader(train_set, batch_size=cfg.batch_size, sampler=sampler, num_workers=cfg.num_workers,
                      collate_fn=functools.partial(collate, with_actions=cfg.stage != "pretrain"),
                      persistent_workers=cfg.num_workers > 0)


def _start_logging(cfg: TrainConfig, accelerator, output_dir: Path, progress: Progress) -> None:
    if accelerator.is_main_process:
        output_dir.mkdir(parents=True, exist_ok=True)
        write_text_atomically(output_dir / "train_config.json", cfg.to_json())
        print(cfg.to_json())
        _trim_metrics_log(output_dir / "metrics.jsonl", progress.step)
    if cfg.log_with != "none":
        accelerator.init_trackers("gigaworld-policy", config={"preset": cfg.preset, "stage": cfg.stage,
                                                              "steps": cfg.steps, "lr": cfg.optim.lr})


def _optimizer_step(cfg: TrainConfig, accelerator, model, optimizer, batches, step: int) -> dict[str, float]:
    """One optimiser step over `grad_accum` micro-batches; returns its losses. The flow-matching noise of each
    micro-batch comes from a generator seeded by (seed, step, rank, micro-step): what makes resume exact."""
    losses = {"loss": 0.0, "loss_action": 0.0, "loss_video": 0.0}
    for micro in range(cfg.grad_accum):
        batch = next(batches)
        seed = ((cfg.seed * 1_000_003 + step) * 64 + accelerator.process_index) * 64 + micro
        with accelerator.accumulate(model):
            loss, info = model(batch, generator=torch.Generator().manual_seed(seed))
            accelerator.backward(loss)
            if accelerator.sync_gradients and cfg.optim.grad_clip > 0:
                accelerator.clip_grad_norm_(model.parameters(), cfg.optim.grad_clip)
            optimizer.step()
            optimizer.zero_grad()
        losses["loss"] += loss.item() / cfg.grad_accum
        losses["loss_action"] += float(info["loss_action"]) / cfg.grad_accum
        losses["loss_video"] += float(info["loss_video"]) / cfg.grad_accum
    return losses


def _log(cfg: TrainConfig, accelerator, output_dir: Path, step: int, means: dict[str, float], lr: float) -> None:
    scalars = {**{f"train/{k}": v for k, v in means.items()}, "train/lr": lr}
    if cfg.log_with != "none":
        accelerator.log(scalars, step=step)
    if accelerator.is_main_process:
        with (output_dir / "metrics.jsonl").open("a") as log:
            log.write(json.dumps({"step": step, **scalars}) + "\n")


def _validate_and_log(cfg: TrainConfig, accelerator, policy: GigaWorldPolicy, val_set: Subset, output_dir: Path,
                      step: int) -> None:
    if accelerator.is_main_process:
        metrics = validate(policy, val_set, cfg, output_dir / "validation" / f"step-{step:06d}.png")
        if cfg.log_with != "none":
            accelerator.log({f"val/{k}": v for k, v in metrics.items()}, step=step)
    accelerator.wait_for_everyone()


class _ProgressBar:
    """Steps against --steps; with --max-minutes the bar counts the time budget instead (a run limited to 40 minutes
    would otherwise show an ETA for all its 100,000 steps)."""

    def __init__(self, cfg: TrainConfig, progress: Progress, disable: bool):
        from tqdm import tqdm

        self.budget = cfg.max_minutes
        if self.budget is None:
            self.bar = tqdm(total=cfg.steps, initial=progress.step, desc=cfg.stage, unit="step", disable=disable)
        else:
            total = round(60 * self.budget)  # in whole seconds of the budget, counting those of resumed runs
            self.bar = tqdm(total=total, initial=min(round(60 * progress.minutes), total), disable=disable,
                            desc=f"{cfg.stage}, {self.budget:g}-minute budget",
                            bar_format="{l_bar}{bar}| {elapsed}<{remaining}{postfix}")

    def update(self, progress: Progress, loss: float) -> None:
        if self.budget is None:
            self.bar.update()
        else:
            self.bar.update(min(round(60 * progress.minutes), self.bar.total) - self.bar.n)
        self.bar.set_postfix(step=progress.step, loss=f"{loss:.4f}")

    def close(self) -> None:
        self.bar.close()


def validate(policy: GigaWorldPolicy, samples: Subset, cfg: TrainConfig, image_path: Path) -> dict[str, float]:
    """Open-loop action error and future-frame error on held-out samples; saves a comparison image."""
    from .evaluate import open_loop, save_future_comparison

    policy.eval()
    indices = torch.linspace(0, len(samples) - 1, min(cfg.val_samples, len(samples))).long().tolist()
    batch = torch.utils.data.default_collate([samples[i] for i in indices])
    metrics, predicted = open_loop(policy, batch, generator=torch.Generator().manual_seed(cfg.seed))
    if predicted is not None:
        save_future_comparison(image_path, batch["future_images"], predicted)
    policy.train()
    return metrics
