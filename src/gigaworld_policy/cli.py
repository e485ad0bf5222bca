"""`gwp` command line: a thin layer over library functions."""

from __future__ import annotations

import argparse
import json
import sys

from .atomic import exit_cleanly_on_sigterm
from .config import PRESETS
from .extras import MissingExtra
from .serving.observation import MAX_INSTRUCTION_CHARS, MAX_MESSAGE_BYTES

GOAL_MARKER_HELP = "draw Meta-World's goal sphere with this radius in metres, e.g. 0.05 (default: its own 2 cm)"
OBSERVE_GOAL_HELP = ("append the goal's xyz to the state (7 numbers), as Meta-World's multi-task benchmarks observe it "
                     "(default: hand xyz + gripper only)")
TEMPERATURE_HELP = ("std of the noise action sampling starts from: 1 samples the learned action distribution, 0 "
                    "decodes deterministically (often better when the demonstrations are noisy)")
ACTION_NOISE_HELP = ("std of Gaussian noise added to the expert's hand motion (dx, dy, dz) before it is executed and "
                     "recorded, so the future depends on the actions, not on the observation alone, e.g. 0.5 "
                     "(default: none)")
ACTION_NOISE_CORRELATION_HELP = ("correlation of the action noise from one step to the next, in [0, 1), e.g. 0.9 "
                                 "for noise that drifts ~10 steps (default: independent steps)")


def _bench_latency(args: argparse.Namespace) -> None:
    from .bench import format_latency, measure_latency

    result = measure_latency(args.preset, args.device, args.threads, args.batch_size, args.steps, args.repeats,
                             dtype=args.dtype, compile=args.compile, attention=args.attention, vae=args.vae)
    print(json.dumps(result) if args.json else format_latency(result))


def _size(text: str) -> tuple[int, int]:
    """'96x128' -> (96, 128) as (height, width)."""
    try:
        height, width = (int(v) for v in text.lower().split("x"))
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"expected HEIGHTxWIDTH such as 96x96, got {text!r}") from error
    return height, width


def _key_map(text: str) -> dict[str, str]:
    """'observation/image=corner,observation/wrist_image=gripperPOV' -> {client key: camera}."""
    pairs = [pair for pair in text.split(",") if pair]
    malformed = [pair for pair in pairs if pair.count("=") != 1 or "" in pair.split("=")]
    if malformed:
        raise argparse.ArgumentTypeError(f"expected CLIENT_KEY=CAMERA pairs separated by commas, got {malformed}")
    return dict(pair.split("=") for pair in pairs)


def _collect_metaworld(args: argparse.Namespace) -> None:
    from .envs.metaworld import collect

    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    cameras = tuple(c.strip() for c in args.cameras.split(","))
    report = collect(tasks, args.episodes, args.out, cameras, args.image_size, args.seed, args.max_steps, args.fps,
                     goal_marker_radius=args.goal_marker_radius, observe_goal=args.observe_goal,
                     action_noise=args.action_noise, action_noise_correlation=args.action_noise_correlation)
    for task, row in report.items():
        print(f"{task}: kept {row['episodes']} of {row['attempts']} expert episodes "
              f"(expert success rate {100 * row['expert_success_rate']:.0f}%)")
    print(f"wrote {args.out}")


def _convert_videos(args: argparse.Namespace) -> None:
    from .data.video_folder import convert_video_folder

    path = convert_video_folder(args.folder, args.out, args.fps, args.size, args.frame_stride, args.camera)
    print(f"wrote {path}")


def _convert_lerobot_v21(args: argparse.Namespace) -> None:
    from .data.lerobot_v21 import convert_lerobot_v21

    path = convert_lerobot_v21(args.src, args.dst, args.data_files_size_in_mb, args.video_files_size_in_mb)
    print(f"wrote {path}")


def _eval_open_loop(args: argparse.Namespace) -> None:
    from .evaluate import open_loop_dataset
    from .inference import load_checkpoint

    policy = load_checkpoint(args.checkpoint, not args.raw_weights, text_encoder=args.text_encoder, vae=args.vae)
    result = open_loop_dataset(policy, args.dataset, args.last_episodes, args.samples, out_dir=args.out,
                               temperature=args.temperature)
    for key, value in result.items():
        print(f"{key}: {value:.5g}")
    print(f"wrote {args.out}/open_loop.json")


def _eval(args: argparse.Namespace) -> None:
    from .envs.metaworld import MetaWorldEnv, check_tasks, state_names
    from .evaluate import closed_loop, report_markdown
    from .inference import Predictor

    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    check_tasks(tasks)  # all of them before the first one runs and writes its videos
    predictor = Predictor.from_checkpoint(args.checkpoint, ema=not args.raw_weights, num_steps=args.steps,
                                          temperature=args.temperature, text_encoder=args.text_encoder, vae=args.vae)
    given = len(state_names(args.observe_goal))
    if predictor.state_dim not in (0, given):
        raise ValueError(f"the policy reads a state of {predictor.state_dim} numbers; Meta-World gives {given} "
                         f"{'with' if args.observe_goal else 'without'} --observe-goal: evaluate as it was collected")

    def make_env(task: str):
        return MetaWorldEnv(task, tuple(predictor.cameras), predictor.camera_sizes[0], args.max_steps,
                            args.goal_marker_radius, args.observe_goal)

    report = closed_loop(predictor, make_env, tasks, args.episodes, args.seed, args.execute_steps, args.out,
                         with_video=args.video)
    print(report_markdown(report))
    print(f"wrote {args.out}/eval.json and eval.md")


def _demo(args: argparse.Namespace) -> None:
    from .demo import DemoConfig, run_demo

    config = DemoConfig(out=args.out, tasks=tuple(t.strip() for t in args.tasks.split(",") if t.strip()),
                        episodes=args.episodes, preset=args.preset, train_minutes=args.train_minutes,
                        max_steps=args.max_steps, eval_episodes=args.eval_episodes,
                        episode_steps=args.episode_steps, seed=args.seed)
    report = run_demo(config)
    print(report.read_text())
    print(f"report: {report}")


def _serve(args: argparse.Namespace) -> None:
    import logging

    from .inference import Predictor
    from .serving.server import PolicyServer

    logging.basicConfig(level=logging.INFO)
    predictor = Predictor.from_checkpoint(args.checkpoint, ema=not args.raw_weights, num_steps=args.steps,
                                          temperature=args.temperature, text_encoder=args.text_encoder, vae=args.vae)
    print(f"serving {args.checkpoint} on ws://{args.host}:{args.port} (health: GET /healthz)")
    PolicyServer(predictor, args.host, args.port, args.key_map, args.max_message_mib * 2**20,
                 args.max_instruction_chars).run()


def _precompute_latents(args: argparse.Namespace) -> None:
    from .config import PolicyConfig
    from .data import DataConfig, LeRobotDataset, PolicyDataset
    from .data.latents import precompute_latents
    from .encoders.frozen import load_codec

    config = PolicyConfig.preset(args.preset)
    data = DataConfig(cameras=tuple(c for c in args.cameras.split(",") if c), layout=args.layout)
    samples = PolicyDataset(LeRobotDataset(args.dataset), config, data)
    codec = load_codec(config, args.vae, args.device)
    print(f"wrote {precompute_latents(samples, codec, args.out, args.batch_size, args.dtype)}")


def _add_frozen_parts(parser: argparse.ArgumentParser) -> None:
    """The options that name the frozen parts a checkpoint runs with (checkpoints hold only trained weights)."""
    parser.add_argument("--text-encoder", default="minilm", help="'minilm' (the default) or a umT5 folder, e.g. "
                        "Wan2.2's text_encoder/ (its tokenizer in it or in a sibling tokenizer/)")
    parser.add_argument("--vae", default=None, help="Wan2.2 VAE folder, for a policy whose codec is wan_vae")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gwp", description="GigaWorld-Policy command line")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("train", help="train a policy (see `gwp train --help`)", add_help=False)

    bench = commands.add_parser("bench", help="benchmarks").add_subparsers(dest="benchmark", required=True)
    latency = bench.add_parser("latency", help="decoding latency: cached action-only vs uncached vs joint")
    latency.add_argument("--preset", default="bench", choices=sorted(PRESETS))
    latency.add_argument("--device", default="cpu")
    latency.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    latency.add_argument("--batch-size", type=int, default=1)
    latency.add_argument("--steps", type=int, default=None, help="Euler steps (default: the preset's)")
    latency.add_argument("--repeats", type=int, default=3, help="timed runs per path (median reported)")
    latency.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"], help="weights' dtype")
    latency.add_argument("--compile", action="store_true", help="torch.compile the transformer blocks")
    latency.add_argument("--attention", default="sdpa", choices=["sdpa", "flex"], help="attention backend")
    latency.add_argument("--vae", default=None, help="Wan2.2 VAE folder (gwp0; default: random weights)")
    latency.add_argument("--json", action="store_true", help="print one JSON object")
    latency.set_defaults(run=_bench_latency)

    collect = commands.add_parser("collect", help="record demonstrations").add_subparsers(dest="env", required=True)
    metaworld = collect.add_parser("metaworld", help="Meta-World scripted experts -> LeRobot v3.0 dataset")
    metaworld.add_argument("--tasks", required=True, help="comma-separated, e.g. reach-v3,button-press-topdown-v3")
    metaworld.add_argument("--episodes", type=int, default=50, help="successful episodes per task")
    metaworld.add_argument("--out", required=True, help="new dataset folder")
    metaworld.add_argument("--cameras", default="corner,corner2,gripperPOV")
    metaworld.add_argument("--image-size", type=_size, default=(96, 96), help="HEIGHTxWIDTH per camera")
    metaworld.add_argument("--seed", type=int, default=0)
    metaworld.add_argument("--max-steps", type=int, default=500)
    metaworld.add_argument("--fps", type=int, default=10)
    metaworld.add_argument("--goal-marker-radius", type=float, default=None, help=GOAL_MARKER_HELP)
    metaworld.add_argument("--observe-goal", action="store_true", help=OBSERVE_GOAL_HELP)
    metaworld.add_argument("--action-noise", type=float, default=0.0, help=ACTION_NOISE_HELP)
    metaworld.add_argument("--action-noise-correlation", type=float, default=0.0, help=ACTION_NOISE_CORRELATION_HELP)
    metaworld.set_defaults(run=_collect_metaworld)

    offline = commands.add_parser("eval-open-loop", help="action / future-frame error on held-out episodes")
    offline.add_argument("--checkpoint", required=True)
    offline.add_argument("--dataset", required=True)
    offline.add_argument("--last-episodes", type=int, default=5, help="held-out episodes at the dataset's end")
    offline.add_argument("--samples", type=int, default=64, help="frames evaluated, spread over those episodes")
    offline.add_argument("--out", default="outputs/eval_open_loop")
    offline.add_argument("--raw-weights", action="store_true", help="use the raw instead of the EMA weights")
    offline.add_argument("--temperature", type=float, default=1.0, help=TEMPERATURE_HELP)
    _add_frozen_parts(offline)
    offline.set_defaults(run=_eval_open_loop)

    demo = commands.add_parser("demo", help="the main job: collect, train, evaluate, report (CPU, < 60 min)")
    demo.add_argument("--out", default="outputs/demo")
    demo.add_argument("--tasks", default="reach-v3,button-press-topdown-v3,drawer-open-v3")
    demo.add_argument("--episodes", type=int, default=20, help="expert demonstrations per task")
    demo.add_argument("--preset", default="small", choices=sorted(PRESETS))
    demo.add_argument("--train-minutes", type=float, default=40.0, help="training time budget")
    demo.add_argument("--max-steps", type=int, default=100_000, help="training steps, if time allows")
    demo.add_argument("--eval-episodes", type=int, default=20, help="evaluation episodes per task")
    demo.add_argument("--episode-steps", type=int, default=200, help="evaluation time limit per episode")
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(run=_demo)

    evaluate = commands.add_parser("eval", help="closed-loop evaluation in a simulator")
    evaluate.add_argument("--checkpoint", required=True, help="a checkpoint folder (e.g. OUT/checkpoints/last)")
    evaluate.add_argument("--env", default="metaworld", choices=["metaworld"], help="simulator")
    evaluate.add_argument("--tasks", required=True, help="comma-separated task names")
    evaluate.add_argument("--episodes", type=int, default=20, help="episodes per task")
    evaluate.add_argument("--seed", type=int, default=1000, help="base seed (demonstrations use 0)")
    evaluate.add_argument("--execute-steps", type=int, default=None, help="actions executed per plan (default H)")
    evaluate.add_argument("--steps", type=int, default=None, help="Euler steps (default: the policy's)")
    evaluate.add_argument("--temperature", type=float, default=1.0, help=TEMPERATURE_HELP)
    evaluate.add_argument("--max-steps", type=int, default=200, help="episode time limit")
    evaluate.add_argument("--goal-marker-radius", type=float, default=None, help=GOAL_MARKER_HELP + " (as collected)")
    evaluate.add_argument("--observe-goal", action="store_true", help=OBSERVE_GOAL_HELP + " (as collected)")
    evaluate.add_argument("--out", default="outputs/eval")
    evaluate.add_argument("--video", action="store_true", help="also decode and save predicted future frames")
    evaluate.add_argument("--raw-weights", action="store_true", help="use the raw instead of the EMA weights")
    _add_frozen_parts(evaluate)
    evaluate.set_defaults(run=_eval)

    serve = commands.add_parser("serve", help="serve a checkpoint over websockets (openpi protocol)")
    serve.add_argument("--checkpoint", required=True)
    serve.add_argument("--host", default="0.0.0.0")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--key-map", type=_key_map, default={},
                       help="client key=camera pairs, e.g. observation/image=corner")
    serve.add_argument("--steps", type=int, default=None, help="Euler steps (default: the policy's)")
    serve.add_argument("--max-message-mib", type=int, default=MAX_MESSAGE_BYTES // 2**20,
                       help="largest request in MiB; a larger one closes its connection (default: %(default)s)")
    serve.add_argument("--max-instruction-chars", type=int, default=MAX_INSTRUCTION_CHARS,
                       help="longest instruction; a longer one gets an error reply (default: %(default)s)")
    serve.add_argument("--temperature", type=float, default=1.0, help=TEMPERATURE_HELP)
    serve.add_argument("--raw-weights", action="store_true", help="use the raw instead of the EMA weights")
    _add_frozen_parts(serve)
    serve.set_defaults(run=_serve)

    latents = commands.add_parser("precompute-latents", help="encode a dataset's clips once (train with --latents)")
    latents.add_argument("--dataset", required=True)
    latents.add_argument("--preset", default="gwp0", choices=sorted(PRESETS))
    latents.add_argument("--vae", default=None, help="Wan2.2 VAE folder (for presets with the VAE codec)")
    latents.add_argument("--out", required=True)
    latents.add_argument("--cameras", default="", help="comma-separated, in composite order (default: all)")
    latents.add_argument("--layout", default=None, choices=["t", "row", "single"])
    latents.add_argument("--batch-size", type=int, default=8)
    latents.add_argument("--dtype", default="float16", choices=["float16", "float32"])
    latents.add_argument("--device", default="cpu")
    latents.set_defaults(run=_precompute_latents)

    convert = commands.add_parser("convert", help="convert data").add_subparsers(dest="source", required=True)
    videos = convert.add_parser("videos", help="folder of .mp4 (+ .txt captions) -> video-only dataset")
    videos.add_argument("--folder", required=True)
    videos.add_argument("--out", required=True)
    videos.add_argument("--fps", type=int, default=10)
    videos.add_argument("--size", type=_size, default=None, help="HEIGHTxWIDTH (default: the first video's)")
    videos.add_argument("--frame-stride", type=int, default=1)
    videos.add_argument("--camera", default="main")
    videos.set_defaults(run=_convert_videos)
    v21 = convert.add_parser("lerobot-v21", help="LeRobot v2.1 (or v2.0) dataset -> v3.0, offline, no re-encoding")
    v21.add_argument("src", help="the v2.x dataset folder")
    v21.add_argument("dst", help="the new v3.0 dataset folder (must not exist)")
    v21.add_argument("--data-files-size-in-mb", type=float, default=100, help="largest data file (default 100)")
    v21.add_argument("--video-files-size-in-mb", type=float, default=500, help="largest video file (default 500)")
    v21.set_defaults(run=_convert_lerobot_v21)
    return parser


def parse_train_args(argv: list[str]):
    """`gwp train [--config FILE.json|.yaml] [--field value ...]`: options are TrainConfig's fields, nested ones
    dotted (--optim.lr 3e-4, --data.cameras corner corner2); a config file sets defaults that flags override."""
    import tyro

    from .train import TrainConfig

    default = TrainConfig()
    if "--config" in argv:
        position = argv.index("--config")
        if position + 1 == len(argv):
            raise ValueError("--config needs a YAML or JSON file")
        default = TrainConfig.from_file(argv[position + 1])
        argv = argv[:position] + argv[position + 2 :]
    return tyro.cli(TrainConfig, args=argv, default=default, prog="gwp train")


def train_command(argv: list[str]) -> None:
    from .train import train

    print(f"final checkpoint: {train(parse_train_args(argv)).checkpoint}")


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    exit_cleanly_on_sigterm()
    if argv and argv[0] == "train":
        try:
            train_command(argv[1:])
        except (ValueError, FileNotFoundError, FileExistsError, MissingExtra) as error:
            sys.exit(f"gwp: error: {error}")
        return
    args = build_parser().parse_args(argv)
    try:
        args.run(args)
    except (ValueError, FileNotFoundError, FileExistsError, MissingExtra) as error:
        sys.exit(f"gwp: error: {error}")


if __name__ == "__main__":
    main()
