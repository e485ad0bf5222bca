"""`gwp` command line: a thin layer over library functions.

Every command is a dataclass that tyro turns into flags, as `gwp train` does with `TrainConfig`: a field is a flag
(`--execute-steps 8`), a list takes its items after one flag (`--tasks reach-v3 drawer-open-v3`), a nested group's
flags are dotted unless the group is declared flat (`--optim.lr 3e-4`). The options of several commands are declared
once: `Checkpoint` (which checkpoint, its weights and frozen parts) and `Sampling` (how actions are sampled). The
environment commands take one environment's settings (envs/registry.py) as flags: `gwp collect metaworld ...`,
`gwp eval metaworld ...`. `gwp train --config run.yaml` reads defaults from a file that flags override.

Mistakes in the flags are reported by tyro, with the flag's help; everything that fails after that ends in one line,
`gwp: error: <sentence>`.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Generic, Literal, TypeVar

import tyro
from tyro.conf import OmitArgPrefixes, Positional
from tyro.constructors import PrimitiveConstructorSpec

from .atomic import exit_cleanly_on_sigterm
from .config import PRESETS, did_you_mean
from .demo import DemoConfig
from .envs.registry import ENVIRONMENTS
from .extras import MissingExtra
from .memory import PlanConfig
from .serving.observation import MAX_INSTRUCTION_CHARS, MAX_MESSAGE_BYTES
from .train import TrainConfig

Preset = Literal[tuple(sorted(PRESETS))]
Settings = TypeVar("Settings")  # one environment's settings dataclass


def _key_map(args: list[str]) -> dict[str, str]:
    """['observation/image=corner,observation/wrist_image=gripperPOV'] -> {client key: camera}."""
    pairs = [pair for pair in args[0].split(",") if pair]
    malformed = [pair for pair in pairs if pair.count("=") != 1 or "" in pair.split("=")]
    if malformed:
        raise ValueError(f"expected CLIENT_KEY=CAMERA pairs separated by commas, got {malformed}")
    return dict(pair.split("=") for pair in pairs)


KeyMap = Annotated[dict[str, str], PrimitiveConstructorSpec(
    nargs=1, metavar="KEY=CAMERA,...", instance_from_str=_key_map, is_instance=lambda value: isinstance(value, dict),
    str_from_instance=lambda pairs: [",".join(f"{key}={camera}" for key, camera in pairs.items())])]


# ---- options shared by several commands --------------------------------------------------------------------------
@dataclass(frozen=True)
class Checkpoint:
    """The checkpoint to run and the frozen parts it runs with (checkpoints hold only trained weights)."""

    checkpoint: str
    """a checkpoint folder, e.g. OUT/checkpoints/last"""
    raw_weights: bool = False
    """use the raw instead of the EMA weights"""
    text_encoder: str = "minilm"
    """'minilm' or a umT5 folder, e.g. Wan2.2's text_encoder/ (its tokenizer in it or in a sibling tokenizer/)"""
    vae: str | None = None
    """Wan2.2 VAE folder, for a policy whose codec is wan_vae"""
    lora_base: str | None = None
    """the base weights a LoRA checkpoint applies to (None: the folder it records)"""

    def policy(self):
        """The policy, ready to run (`inference.load_checkpoint`)."""
        from .inference import load_checkpoint

        return load_checkpoint(self.checkpoint, not self.raw_weights, text_encoder=self.text_encoder, vae=self.vae,
                               lora_base=self.lora_base)


@dataclass(frozen=True)
class Sampling:
    """How action chunks are sampled."""

    steps: int | None = None
    """Euler steps (None: the policy's)"""
    temperature: float = 1.0
    """std of the noise sampling starts from: 1 samples the learned distribution, 0 decodes deterministically"""

    def predictor(self, checkpoint: Checkpoint, embodiment: str | None = None, robot: str | None = None):
        """The checkpoint's `Predictor`, sampling this way, acting as `embodiment`; without one, as the embodiment
        named `robot` where the policy has one (a policy trained on several robots), else as its first."""
        from .inference import Predictor

        policy = checkpoint.policy()
        embodiment = embodiment or (robot if robot in policy.processors else None)
        return Predictor(policy, embodiment, num_steps=self.steps, temperature=self.temperature)


# ---- commands ----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class BenchLatency:
    preset: Preset = "bench"
    device: str = "cpu"
    threads: int = 1
    """torch intra-op threads"""
    batch_size: int = 1
    steps: int | None = None
    """Euler steps (None: the preset's)"""
    repeats: int = 3
    """timed runs per path (the median is reported)"""
    dtype: Literal["float32", "bfloat16"] = "float32"
    """the weights' dtype"""
    compile: bool = False
    """torch.compile the transformer blocks"""
    attention: Literal["sdpa", "flex"] = "sdpa"
    vae: str | None = None
    """Wan2.2 VAE folder (gwp0; None: random weights)"""
    json: bool = False
    """print one JSON object"""


def _bench_latency(command: BenchLatency) -> None:
    from .bench import format_latency, measure_latency

    result = measure_latency(command.preset, command.device, command.threads, command.batch_size, command.steps,
                             command.repeats, dtype=command.dtype, compile=command.compile,
                             attention=command.attention, vae=command.vae)
    print(json.dumps(result) if command.json else format_latency(result))


@dataclass(frozen=True)
class Collect(Generic[Settings]):
    """Record successful demonstrations of the environment's scripted expert into a new LeRobot v3.0 dataset, with
    the environment's settings in it (meta/environment.json), for `gwp eval --dataset`."""

    env: OmitArgPrefixes[Settings]
    tasks: tuple[str, ...]
    """e.g. reach-v3 button-press-topdown-v3"""
    out: str
    """the new dataset folder"""
    episodes: int = 50
    """successful episodes per task"""
    seed: int = 0
    """base seed of the episodes' layouts (evaluation uses 1000)"""
    max_steps: int = 500
    """time limit of an episode"""
    keep_failures: bool = False
    """keep the episodes the expert fails too (video for action-free pre-training)"""


def _collect(command: Collect) -> None:
    from .envs.recording import collect

    report = collect(command.env, _names(command.tasks, "--tasks"), command.episodes, command.out, command.seed,
                     command.max_steps, keep_failures=command.keep_failures)
    for task, row in report.items():
        print(f"{task}: kept {row['episodes']} of {row['attempts']} expert episodes "
              f"(expert success rate {100 * row['expert_success_rate']:.0f}%)")
    print(f"wrote {command.out}")


@dataclass(frozen=True)
class Recorded:
    """The environment and its settings as a dataset recorded them."""

    dataset: str | None = None
    """a dataset `gwp collect` recorded (default: the one the checkpoint was trained on, as the checkpoint records it);
    without --tasks, evaluate on its tasks (settings as flags: gwp eval ENV)"""


@dataclass(frozen=True)
class Eval(Generic[Settings]):
    """Closed-loop evaluation in a simulator: success rate (95% Wilson interval), episode length, policy latency and
    rollout videos, written to OUT/eval.json and eval.md."""

    env: OmitArgPrefixes[Settings]
    load: OmitArgPrefixes[Checkpoint]
    sampling: OmitArgPrefixes[Sampling] = Sampling()
    tasks: tuple[str, ...] = ()
    """task names (with --dataset, by default the ones it recorded)"""
    episodes: int = 20
    """episodes per task"""
    seed: int = 1000
    """base seed (demonstrations use 0)"""
    execute_steps: int | None = None
    """actions executed per plan (None: the whole chunk)"""
    max_steps: int | None = None
    """time limit of an episode (default: the simulator's, Meta-World 200 steps, ALOHA 400)"""
    out: str = "outputs/eval"
    embodiment: str | None = None
    """the embodiment to act as (default: the one named by the environment's robot, else the policy's first); with
    neither --dataset nor settings, also picks which of the checkpoint's environments"""
    video: bool = False
    """also decode and save predicted future frames"""
    delay_steps: int = 0
    """control steps a chunk takes to compute (simulated inference latency)"""
    execution: Literal["sync", "async", "rtc", "ensemble"] = "sync"
    """meanwhile the robot holds still (sync), keeps executing the current chunk (async), or does so and the request
    carries those actions for the policy to continue (rtc: real-time chunking); or, without delay, ACT's temporal
    ensembling (ensemble: a chunk every --execute-steps steps, ACT uses 1, overlapping chunks averaged)"""
    ensemble_coeff: float = 0.01
    """ensemble: the i-th oldest chunk covering a step weighs exp(-coeff * i) (ACT's 0.01)"""


def _eval(command: Eval) -> None:
    from .envs.recording import read_recording
    from .envs.registry import name_of
    from .evaluate import closed_loop, env_maker, report_markdown

    settings, tasks = command.env, list(command.tasks)
    if isinstance(settings, Recorded):
        recording = (read_recording(settings.dataset) if settings.dataset else
                     _trained_in(command.load.checkpoint, command.embodiment))
        settings, tasks = recording.settings, tasks or list(recording.tasks)
        if not tasks:
            raise ValueError(f"{command.env.dataset or command.load.checkpoint} does not record its tasks: name them "
                             f"with --tasks")
    if not tasks:
        raise ValueError("no task given: name them with --tasks")
    simulator = ENVIRONMENTS[name_of(settings)].simulator
    simulator.check_tasks(_names(tasks, "--tasks"))  # before any runs and writes
    predictor = command.sampling.predictor(command.load, command.embodiment, robot=simulator.robot_type)
    max_steps = command.max_steps or simulator.evaluation_steps
    report = closed_loop(predictor, env_maker(predictor, settings, max_steps), tasks, command.episodes,
                         command.seed, command.execute_steps, command.out, with_video=command.video,
                         delay_steps=command.delay_steps, execution=command.execution,
                         ensemble_coeff=command.ensemble_coeff)
    print(report_markdown(report))
    print(f"wrote {command.out}/eval.json and eval.md")


def _trained_in(checkpoint: str, embodiment: str | None):
    """The `Recording` of the data the checkpoint's `embodiment` (or its only one) was trained on, as training stored
    it in the checkpoint."""
    from .checkpoints import ENVIRONMENTS
    from .config import read_json
    from .envs.recording import Recording

    path = Path(checkpoint) / ENVIRONMENTS
    if not path.is_file():
        raise ValueError(f"{checkpoint} records no environment ({ENVIRONMENTS} is missing: its training data were not "
                         "recorded by `gwp collect`, or it predates the file): give --dataset DIR or the settings, "
                         "`gwp eval ENV --help`")
    environments = read_json(path)
    if embodiment is None and len(environments) > 1:
        raise ValueError(f"{checkpoint} was trained in several environments, for embodiments {list(environments)}: "
                         f"choose one with --embodiment")
    name = embodiment or next(iter(environments))
    if name not in environments:
        raise ValueError(f"{checkpoint} records environments for embodiments {list(environments)}, not {name!r}")
    return Recording.from_dict(environments[name], str(path))


@dataclass(frozen=True)
class EvalOpenLoop:
    """Action and future-frame error on a dataset's last (held-out) episodes, preprocessed as the checkpoint was
    trained."""

    load: OmitArgPrefixes[Checkpoint]
    dataset: str
    sampling: OmitArgPrefixes[Sampling] = Sampling()
    last_episodes: int = 5
    """held-out episodes at the dataset's end"""
    samples: int = 64
    """frames evaluated, spread over those episodes"""
    embodiment: str | None = None
    """the robot to score the data as, for a policy trained on several (default: the dataset's robot_type)"""
    out: str = "outputs/eval_open_loop"


def _eval_open_loop(command: EvalOpenLoop) -> None:
    from .evaluate import open_loop_dataset

    result = open_loop_dataset(command.load.policy(), command.dataset, command.last_episodes, command.samples,
                               out_dir=command.out, num_steps=command.sampling.steps,
                               temperature=command.sampling.temperature, embodiment=command.embodiment)
    for key, value in result.items():
        print(f"{key}: {value:.5g}")
    print(f"wrote {command.out}/open_loop.json")


def _demo(config: DemoConfig) -> None:
    from .demo import run_demo

    report = run_demo(config)
    print(report.read_text())
    print(f"report: {report}")


@dataclass(frozen=True)
class Serve:
    """Serve a checkpoint over websockets (openpi's protocol; health check: GET /healthz)."""

    load: OmitArgPrefixes[Checkpoint]
    sampling: OmitArgPrefixes[Sampling] = Sampling()
    host: str = "0.0.0.0"
    port: int = 8000
    key_map: KeyMap = field(default_factory=dict)
    """client key=camera pairs, e.g. observation/image=corner"""
    max_message_mib: int = MAX_MESSAGE_BYTES // 2**20
    """largest request in MiB; a larger one closes its connection"""
    max_instruction_chars: int = MAX_INSTRUCTION_CHARS
    """longest instruction; a longer one gets an error reply"""
    embodiment: str | None = None
    """the robot to act as, for a policy trained on several (None: its first)"""


def _serve(command: Serve) -> None:
    import logging

    from .serving.server import PolicyServer

    logging.basicConfig(level=logging.INFO)
    predictor = command.sampling.predictor(command.load, command.embodiment)
    print(f"serving {command.load.checkpoint} on ws://{command.host}:{command.port} (health: GET /healthz)")
    PolicyServer(predictor, command.host, command.port, command.key_map, command.max_message_mib * 2**20,
                 command.max_instruction_chars).run()


@dataclass(frozen=True)
class PrecomputeLatents:
    """Encode a dataset's clips once, for `gwp train --latents`."""

    dataset: str
    out: str
    preset: Preset = "gwp0"
    vae: str | None = None
    """Wan2.2 VAE folder (for presets with the VAE codec)"""
    cameras: tuple[str, ...] = ()
    """in composite order (empty: all)"""
    layout: Literal["t", "row", "single"] | None = None
    batch_size: int = 8
    dtype: Literal["float16", "float32"] = "float16"
    device: str = "cpu"


def _precompute_latents(command: PrecomputeLatents) -> None:
    from .config import PolicyConfig
    from .data import DataConfig, LeRobotDataset, PolicyDataset
    from .data.latents import precompute_latents
    from .encoders.frozen import load_codec

    config = PolicyConfig.preset(command.preset)
    samples = PolicyDataset(LeRobotDataset(command.dataset), config,
                            DataConfig(cameras=command.cameras, layout=command.layout))
    codec = load_codec(config, command.vae, command.device)
    print(f"wrote {precompute_latents(samples, codec, command.out, command.batch_size, command.dtype)}")


@dataclass(frozen=True)
class PrecomputeText:
    """Encode a dataset's instructions once, for `gwp train --text-embeddings` (training then loads no text
    encoder)."""

    dataset: str
    out: str
    text_encoder: str = "minilm"
    """'minilm' or a umT5 folder, e.g. Wan2.2's text_encoder/ (its tokenizer in it or in a sibling tokenizer/)"""
    preset: Preset = "gwp0"
    """the policy whose text width and token count the embeddings are for"""
    batch_size: int = 16
    device: str = "cpu"


def _precompute_text(command: PrecomputeText) -> None:
    from .config import PolicyConfig
    from .data import LeRobotDataset
    from .data.text_embeddings import precompute_text_embeddings
    from .encoders.frozen import load_text_encoder

    encoder = load_text_encoder(command.text_encoder, PolicyConfig.preset(command.preset), command.device)
    if encoder is None:
        raise ValueError("--text-encoder none encodes nothing: give 'minilm' or a umT5 folder")
    path = precompute_text_embeddings(LeRobotDataset(command.dataset), encoder, command.out, command.batch_size)
    print(f"wrote {path}")


@dataclass(frozen=True)
class ConvertVideos:
    """A folder of .mp4 files (with optional .txt captions) -> a video-only dataset, for video pre-training."""

    folder: str
    out: str
    fps: int = 10
    size: tuple[int, int] | None = None
    """HEIGHT WIDTH (None: the first video's)"""
    frame_stride: int = 1
    camera: str = "main"


def _convert_videos(command: ConvertVideos) -> None:
    from .data.video_folder import convert_video_folder

    path = convert_video_folder(command.folder, command.out, command.fps, command.size, command.frame_stride,
                                command.camera)
    print(f"wrote {path}")


@dataclass(frozen=True)
class ConvertLeRobotV21:
    """A LeRobot v2.1 (or v2.0) dataset -> v3.0, offline, the videos' packets copied (no re-encoding)."""

    src: Positional[str]
    """the v2.x dataset folder"""
    dst: Positional[str]
    """the new v3.0 dataset folder (must not exist)"""
    data_files_size_in_mb: float = 100
    """largest data file"""
    video_files_size_in_mb: float = 500
    """largest video file"""


def _convert_lerobot_v21(command: ConvertLeRobotV21) -> None:
    from .data.lerobot_v21 import convert_lerobot_v21

    path = convert_lerobot_v21(command.src, command.dst, command.data_files_size_in_mb,
                               command.video_files_size_in_mb)
    print(f"wrote {path}")


@dataclass(frozen=True)
class MergeLora:
    """A LoRA checkpoint merged into its base weights, written as an ordinary checkpoint folder (full weights)."""

    checkpoint: str
    """a LoRA checkpoint folder (with lora.json), e.g. OUT/checkpoints/last"""
    out: str
    """the merged checkpoint folder"""
    lora_base: str | None = None
    """the base weights it applies to (None: the folder it records)"""


def _merge_lora(command: MergeLora) -> None:
    from .model.lora import merge_checkpoint

    print(f"wrote {merge_checkpoint(command.checkpoint, command.out, command.lora_base)}")


def _plan_memory(plan) -> None:
    from .memory import print_plan

    print_plan(plan)


def _train(config: TrainConfig) -> None:
    import torch.distributed

    from .train import train

    print(f"final checkpoint: {train(config).checkpoint}")
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()  # this process trained once: leave torchrun a clean exit


def _names(names: list[str] | tuple[str, ...], flag: str) -> list[str]:
    """The names a list flag was given, refusing the comma-joined spelling of earlier versions."""
    joined = [name for name in names if "," in name]
    if joined:
        raise ValueError(f"{flag} takes names separated by spaces, got {joined[0]!r}")
    return list(names)


# ---- the command table -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Command:
    config: Any  # the dataclass tyro parses
    run: Callable[[Any], None]
    help: str


COMMANDS: dict[str, Command] = {
    "train": Command(TrainConfig, _train, "train a policy (TrainConfig's fields; --config FILE.yaml|.json)"),
    "demo": Command(DemoConfig, _demo, "the main job: collect, train, evaluate, report (CPU, < 60 min)"),
    **{f"collect {name}": Command(Collect[entry.settings], _collect, f"record {name} expert demonstrations")
       for name, entry in ENVIRONMENTS.items()},
    "eval": Command(Eval[Recorded], _eval, "closed-loop evaluation with the settings a dataset was recorded with"),
    **{f"eval {name}": Command(Eval[entry.settings], _eval, f"closed-loop evaluation in {name}, settings as flags")
       for name, entry in ENVIRONMENTS.items()},
    "eval-open-loop": Command(EvalOpenLoop, _eval_open_loop, "action / future-frame error on held-out episodes"),
    "serve": Command(Serve, _serve, "serve a checkpoint over websockets (openpi protocol)"),
    "precompute-latents": Command(PrecomputeLatents, _precompute_latents,
                                  "encode a dataset's clips once (train with --latents)"),
    "precompute-text": Command(PrecomputeText, _precompute_text,
                               "encode a dataset's instructions once (train with --text-embeddings)"),
    "merge-lora": Command(MergeLora, _merge_lora, "a LoRA checkpoint merged into its base: full weights"),
    "plan-memory": Command(PlanConfig, _plan_memory, "per-GPU training memory of a preset, activations measured"),
    "convert videos": Command(ConvertVideos, _convert_videos, "folder of .mp4 (+ .txt captions) -> video-only dataset"),
    "convert lerobot-v21": Command(ConvertLeRobotV21, _convert_lerobot_v21,
                                   "LeRobot v2.1 (or v2.0) dataset -> v3.0, offline, no re-encoding"),
    "bench latency": Command(BenchLatency, _bench_latency,
                             "decoding latency: cached action-only vs uncached vs joint"),
}


def _usage() -> str:
    rows = [(name, command.help) for name, command in COMMANDS.items()]
    width = max(len(name) for name, _ in rows)
    return "\n".join(["usage: gwp COMMAND [FLAGS]   (gwp COMMAND --help for its flags)", "", "commands:",
                      *(f"  {name:<{width}}  {text}" for name, text in rows)])


def parse(argv: list[str]) -> tuple[Command, Any]:
    """The command `argv` names (its leading words) and its parsed config. `--config FILE` (a command whose config
    reads files: train) sets the defaults that the other flags override."""
    words = [word for word in argv[:2] if not word.startswith("-")]
    name = next((" ".join(words[:n]) for n in (2, 1) if " ".join(words[:n]) in COMMANDS), None)
    if name is None:
        known = sorted({key.split()[0] for key in COMMANDS})
        if words and words[0] in known:  # e.g. `gwp convert`: a family of commands
            raise ValueError(f"gwp {words[0]} needs one of: "
                             f"{', '.join(key.split()[1] for key in COMMANDS if key.startswith(words[0] + ' '))}")
        given = words[0] if words else ""
        raise ValueError(f"unknown command {given!r}{did_you_mean(given, known)}; the commands are {known}"
                         if given else f"no command given; the commands are {known}")
    command, rest = COMMANDS[name], argv[len(name.split()):]
    defaults = {}
    if "--config" in rest:
        position = rest.index("--config")
        if not hasattr(command.config, "from_file"):
            raise ValueError(f"gwp {name} reads no --config file (gwp train does)")
        if position + 1 == len(rest):
            raise ValueError("--config needs a YAML or JSON file")
        defaults["default"] = command.config.from_file(rest[position + 1])
        rest = rest[:position] + rest[position + 2:]
    return command, tyro.cli(command.config, args=rest, prog=f"gwp {name}", **defaults)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return
    exit_cleanly_on_sigterm()
    try:
        command, config = parse(argv)
        command.run(config)
    except (ValueError, FileNotFoundError, FileExistsError, MissingExtra) as error:
        sys.exit(f"gwp: error: {error}")


if __name__ == "__main__":
    main()
