"""Does the method learn? Train and evaluate ablations on the same Meta-World demonstrations and held-out seeds.

(`--env aloha --tasks aloha`: the same study on bimanual ALOHA, TransferCube and Insertion, with its scripted experts'
demonstrations.)

Variants (all the same network and budget unless said):
    gwp            video + action losses, independent flow times, action-only decoding   (our default)
    action_only    action loss only (video_loss_weight 0): the ablation the paper's claim rests on
    shared_sigma   one flow time for actions and video (the paper's first model)
    pretrain       a video-only pre-training stage on extra demonstrations whose actions are withheld, then
                   post-training: by default the budget is split in half between the two stages; with
                   `--pretrain-steps N` the stage is N steps more and post-training gets the whole budget (the
                   paper's stages: video pre-training is extra compute that action-free data can pay for)
    baseline       a standard flow-matching policy without video: the observation seen through a small CNN
                   (as in Diffusion Policy) instead of the codec's latent patches, action loss only
    gwp_cnn        the default with the baseline's CNN observation encoder: baseline + the video loss, so
                   the two differ only in the future-video supervision (`--cnn-widths` sets that CNN's stages)
    pretrain_cnn   gwp_cnn with the pretrain variant's video-only stage first
    gwp_cnn_expert gwp_cnn with a 64-wide action expert for the action tokens (GigaWorld-Policy 0.5's design)
    prior_cnn      gwp_cnn post-trained from a video prior (`--prior DIR`, e.g. priors/metaworld-small, pre-trained
                   on the video of other tasks: priors/build-metaworld-small.sh) instead of from random weights
    prior_baseline the baseline (action loss only) post-trained from that prior

The prior variants run only when asked for (`--variants`, with `--prior`); their tables add post-training from the
prior against from scratch (prior_cnn vs gwp_cnn, prior_baseline vs baseline). The paper's curriculum in miniature,
MT3 and the five few-shot tasks the prior never saw (Meta-World's ML45 test tasks):

    python benchmarks/learning.py --tasks bin-picking-v3,box-close-v3,door-lock-v3,door-unlock-v3,hand-insert-v3 \
        --episodes 5 --observe-goal --prior priors/metaworld-small \
        --variants prior_cnn,gwp_cnn,prior_baseline,baseline --steps 2000 --seeds 3 --eval-episodes 10 \
        --name few-shot-prior-2000steps --jobs 2

`--extra-episodes` sets how many action-free demonstrations per task the pre-training variants see (default: as
many as `--episodes`), e.g. few labelled demonstrations and many more unlabelled ones. `--video-loss-weight W` sets
λ_video of the variants that train the video loss (default: the preset's, 1 as in the paper; the action loss keeps
weight 1). `--clean-action-prob P` gives a fraction P of those variants' training samples their action chunk clean
(flow time 0) while the future is noised, so that the video learns to follow a given chunk, as it is decoded.

The budget is a number of optimiser steps (`--steps`: equal supervision per step, the paper's comparison), a
wall-clock time (`--train-minutes`: equal compute on this machine), or both (steps, capped by time). For every
variant and training seed: train, evaluate closed-loop on `--eval-episodes` held-out seeds per task, and write the
run's result to OUT/runs/<variant>-seed<k>/result.json (OUT: --out, by default outputs/learning/<name>), with the
open-loop action error on held-out demonstrations (a less noisy view of generalisation than a few dozen success
counts). `--jobs N` trains N runs at a time, each in its own process on one torch thread (N up to the CPU cores).
A run whose result exists is not run again, so an interrupted benchmark resumes, and runs can be spread over
machines and sessions (`--variants`, `--first-seed`; `--results-from docs/learning-<name>.json` brings back the runs
an earlier session reported); the report covers every run stored under OUT of the variants asked for, and
`--report-only` writes it without training. The section <name> of docs/RESULTS.md (between its markers; `--name`,
by default the task set) gets the tables (mean success +- 95% t-interval over training seeds; the video loss on
against off for the pairs of variants that differ in nothing else; per task, pooled over seeds, with Wilson
intervals), a plot docs/learning-<name>.png (success; training action loss) and docs/learning-<name>.json every
result raw (commit it with the plot).

    python benchmarks/learning.py --tasks mt3 --episodes 20 --steps 2000 --seeds 3 --eval-episodes 10 --jobs 2
    python benchmarks/learning.py --tasks mt10 --episodes 20 --train-minutes 30 --seeds 3
    python benchmarks/learning.py --env aloha --tasks aloha --episodes 50 --variants gwp,action_only --steps 4000 \
        --seeds 3 --eval-episodes 10 --jobs 2
"""

import argparse
import hashlib
import json
import multiprocessing
import shutil
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import fields
from pathlib import Path

import torch

from gigaworld_policy.atomic import exit_cleanly_on_sigterm, write_text_atomically
from gigaworld_policy.config import PolicyConfig
from gigaworld_policy.data import DataConfig, LeRobotDataset
from gigaworld_policy.envs.aloha import TASKS as ALOHA_TASKS
from gigaworld_policy.envs.aloha import AlohaSettings
from gigaworld_policy.envs.base import EnvSettings
from gigaworld_policy.envs.metaworld import MT10, MetaWorldSettings
from gigaworld_policy.envs.recording import collect, read_recording
from gigaworld_policy.envs.registry import ENVIRONMENTS, name_of
from gigaworld_policy.evaluate import closed_loop, env_maker, open_loop_dataset
from gigaworld_policy.execution import ENSEMBLE
from gigaworld_policy.inference import Predictor, load_checkpoint
from gigaworld_policy.model.policy import CONFIG_NAME, WEIGHTS_NAME
from gigaworld_policy.studies.report import StudySettings, write_learning
from gigaworld_policy.studies.results import (
    HELDOUT_DEMOS,
    HELDOUT_EPISODES,
    HELDOUT_SAMPLES,
    PRETRAIN_SETUP_KEYS,
    RESULT,
    SETUP_KEYS,
    action_loss_curve,
    final_checkpoint,
    lacks_heldout_scores,
    restore_results,
    run_folder,
    setup_differences,
    stored_seeds,
)
from gigaworld_policy.studies.variants import (
    DEFAULT_VARIANTS,
    FROM_PRIOR,
    OVERRIDES,
    PRETRAINED,
    VARIANTS,
    trains_video,
)
from gigaworld_policy.train import CHECKPOINTS, OptimConfig, TrainConfig, train

TASK_SETS = {"mt3": ("reach-v3", "button-press-topdown-v3", "drawer-open-v3"), "mt10": MT10,
             "aloha": tuple(ALOHA_TASKS)}
# per environment: the default --camera-size and --episode-steps (the simulator's evaluation limit)
ENV_DEFAULTS = {name: {"camera_size": size, "episode_steps": ENVIRONMENTS[name].simulator.evaluation_steps}
                for name, size in (("metaworld", (64, 64)), ("aloha", AlohaSettings().image_size))}
# the study's options that belong to one environment's settings
ENV_OPTIONS = {"metaworld": ("goal_marker_radius", "observe_goal", "action_noise", "action_noise_correlation"),
               "aloha": ("observe_objects",)}
HELDOUT_SEED = 9000  # of the held-out demonstrations (results.HELDOUT_EPISODES per task)
POLICY_CONFIG = "policy_config.json"  # the preset with --image-size, written once into OUT for every run


def env_settings(args) -> EnvSettings:
    """The settings every demonstration of the study is recorded with and every policy evaluated in."""
    if args.env == "aloha":
        return AlohaSettings(image_size=tuple(args.camera_size), observe_objects=args.observe_objects)
    return MetaWorldSettings(image_size=tuple(args.camera_size), goal_marker_radius=args.goal_marker_radius,
                             observe_goal=args.observe_goal, action_noise=args.action_noise,
                             action_noise_correlation=args.action_noise_correlation)


def demonstrations(folder: Path, tasks: tuple[str, ...], episodes: int, seed: int, settings: EnvSettings) -> None:
    """Record `episodes` expert demonstrations per task into folder with `settings`, unless it already holds exactly
    those."""
    if not (folder / "meta" / "info.json").exists():
        collect(settings, list(tasks), episodes, folder, seed=seed)
        return
    found = LeRobotDataset(folder)
    recorded = read_recording(folder)
    # (recordings older than their task list name their instructions only)
    same_tasks = sorted(recorded.tasks) == sorted(tasks) if recorded.tasks else len(found.tasks) == len(tasks)
    if not same_tasks or len(found.episodes) != episodes * len(tasks) or recorded.settings != settings:
        raise SystemExit(f"{folder} holds {len(found.episodes)} demonstrations of {len(found.tasks)} tasks recorded "
                         f"with {recorded.settings}, not {episodes} of each of {', '.join(tasks)} with {settings}: use "
                         "another --out or delete it")


def policy_config(args) -> PolicyConfig | None:
    """The preset with the composite size --image-size asks for; None when it asks for nothing new. (Training takes
    the state size from the demonstrations, 7 numbers with --observe-goal.)"""
    return PolicyConfig.preset(args.preset).replace(image_size=tuple(args.image_size)) if args.image_size else None


def train_stage(config: TrainConfig) -> tuple[Path, bool]:
    """Train, resuming from the stage's last checkpoint if an earlier process was interrupted (a time budget counts
    the minutes trained up to that checkpoint)."""
    output_dir = Path(config.output_dir)
    if (output_dir / CHECKPOINTS / "last").exists():
        config.resume = True
    elif output_dir.exists():
        shutil.rmtree(output_dir)
    return train(config).checkpoint, config.resume


def run_options(variant: str, args, seed: int) -> dict:
    """TrainConfig options of every training stage of a run: the policy (the preset, --image-size, the variant's
    overrides), the optimiser and the bookkeeping."""
    options = dict(preset=args.preset, batch_size=args.batch_size, num_workers=1, seed=seed,
                   save_every=500, log_every=50, log_with="none",
                   optim=OptimConfig(lr=args.lr, warmup_steps=200, schedule="constant"),
                   data=DataConfig(layout=args.layout), cnn_widths=args.cnn_widths, **OVERRIDES.get(variant, {}))
    if trains_video(variant):
        options.update({k: getattr(args, k) for k in ("video_loss_weight", "clean_action_prob")
                        if getattr(args, k) is not None})
    if policy_config(args):
        options["policy_config"] = str(Path(args.out) / POLICY_CONFIG)
    return options


def train_variant(variant: str, args, data: Path, extra: Path, run: Path, seed: int) -> tuple[Path, int, bool]:
    """Train one (variant, seed); returns the final checkpoint, the optimiser steps taken (both stages) and whether
    an interrupted run was resumed."""

    def budget(share: float) -> dict:
        steps = max(1, round(args.steps * share)) if args.steps else 10**7
        minutes = args.train_minutes * share if args.train_minutes else None
        return {"steps": steps, "max_minutes": minutes}

    common = run_options(variant, args, seed)
    if variant in PRETRAINED:
        # --pretrain-steps: a stage of its own on top of the budget; otherwise half of the budget
        stages = ({"steps": args.pretrain_steps, "max_minutes": None}, budget(1.0)) if args.pretrain_steps else (
            budget(0.5), budget(0.5))
        pre, resumed_pre = train_stage(TrainConfig(dataset=(str(extra),), stage="pretrain", **stages[0],
                                                   output_dir=str(run / "pretrain"), **common))
        post, resumed_post = train_stage(TrainConfig(dataset=(str(data),), init=str(pre), output_dir=str(run / "post"),
                                                     **stages[1], **common))
        return post, int(pre.name) + int(post.name), resumed_pre or resumed_post
    init = args.prior if variant in FROM_PRIOR else None
    checkpoint, resumed = train_stage(TrainConfig(dataset=(str(data),), init=init, output_dir=str(run), **budget(1.0),
                                                  **common))
    return checkpoint, int(checkpoint.name), resumed


def evaluate_checkpoint(checkpoint: Path, settings: EnvSettings, tasks: list[str], episodes: int,
                        execute_steps: int, episode_steps: int, temperature: float = 1.0,
                        execution: str = "sync") -> dict:
    """Closed loop on the study's held-out seeds (from 1000) in the environment of `settings`, as demonstrated, acting
    as the environment's robot (for a policy of several robots; else as its one embodiment). `execution`: "sync"
    executes `execute_steps` actions of each chunk; "ensemble" asks for a chunk every `execute_steps` steps and
    executes ACT's temporal ensemble of the chunks covering each step."""
    policy = load_checkpoint(checkpoint)
    robot = ENVIRONMENTS[name_of(settings)].simulator.robot_type
    predictor = Predictor(policy, robot if robot in policy.processors else None, temperature=temperature)
    return closed_loop(predictor, env_maker(predictor, settings, episode_steps), list(tasks), episodes, seed=1000,
                       execute_steps=execute_steps, execution=execution, progress=False)


def open_loop_heldout(checkpoint: Path, heldout: Path, temperature: float = 1.0) -> dict:
    """Normalised action MSE (and future-frame MSE) on every frame sampled from held-out demonstrations: how well
    the policy imitates the expert on layouts it never saw, without the noise of closed-loop success counts."""
    policy = load_checkpoint(checkpoint)  # EMA weights and the text encoder, as in closed loop
    episodes = len(LeRobotDataset(heldout).episodes)
    return open_loop_dataset(policy, heldout, last_episodes=episodes, max_samples=HELDOUT_SAMPLES, seed=0,
                             temperature=temperature)


def run_once(variant: str, seed: int, args, out: Path) -> dict:
    """Train and evaluate one (variant, seed), or return its stored result."""
    run = run_folder(out, variant, seed)
    result_file = run / RESULT
    setup = {key: getattr(args, key) for key in SETUP_KEYS + (PRETRAIN_SETUP_KEYS if variant in PRETRAINED else ())}
    # The whole policy config the run trains, variant overrides included (presets can change between runs).
    options = run_options(variant, args, seed)
    if variant in FROM_PRIOR:  # the prior's network; the run is tied to its exact weights
        prior = Path(args.prior)
        setup["prior"] = hashlib.sha256((prior / WEIGHTS_NAME).read_bytes()).hexdigest()
        setup["policy"] = TrainConfig(**options, init=str(prior)).policy(
            base=PolicyConfig.from_file(prior / CONFIG_NAME)).to_dict()
    else:
        setup["policy"] = TrainConfig(**options).policy().to_dict()
    setup["normalization"] = options["data"].normalization
    setup = json.loads(json.dumps(setup))  # tuples -> lists, as they come back from the file
    if result_file.exists():
        stored = json.loads(result_file.read_text())
        changed = setup_differences(stored["setup"], setup)
        if changed:
            raise SystemExit(f"{result_file} was made with other settings ({', '.join(changed)}); "
                             f"use another --out or delete it")
        completed = dict(stored)
        if lacks_heldout_scores(stored):
            completed["open_loop_heldout"] = open_loop_heldout(final_checkpoint(run, variant), out / HELDOUT_DEMOS)
        if "action_loss" not in stored and (curve := action_loss_curve(run)):  # stored before results kept it
            completed["action_loss"] = curve
        if completed != stored:
            write_text_atomically(result_file, json.dumps(completed, indent=2))
        return completed
    started = time.monotonic()
    checkpoint, steps, resumed = train_variant(variant, args, out / "demos", out / "extra_demos", run, seed)
    train_minutes = (time.monotonic() - started) / 60
    report = evaluate_checkpoint(checkpoint, env_settings(args), args.task_list, args.eval_episodes,
                                 args.execute_steps, args.episode_steps, execution=args.execution)
    result = {"variant": variant, "seed": seed, "setup": setup, "steps": steps, "resumed": resumed,
              "train_minutes": train_minutes,
              "eval_minutes": (time.monotonic() - started) / 60 - train_minutes, **report,
              "open_loop_heldout": open_loop_heldout(checkpoint, out / HELDOUT_DEMOS),
              "action_loss": action_loss_curve(run)}
    write_text_atomically(result_file, json.dumps(result, indent=2))
    return result


def announce(result: dict) -> dict:
    print(f"{result['variant']} seed {result['seed']}: {100 * result['average_success_rate']:.0f}% average success "
          f"({result['steps']} steps, {result['train_minutes']:.1f} min)", flush=True)
    return result


def run_in_processes(run, pairs: list[tuple[str, int]], args, out: Path, on_result) -> dict[tuple[str, int], dict]:
    """{(name, seed): run(name, seed, args, out)} for every pair, started in the order given, `args.jobs` at a time,
    each in its own process on one torch thread (in this one if `args.jobs` is 1); on_result(result) as each ends."""
    if args.jobs == 1:
        return {(name, seed): on_result(run(name, seed, args, out)) for name, seed in pairs}
    with ProcessPoolExecutor(args.jobs, mp_context=multiprocessing.get_context("spawn"),
                             initializer=torch.set_num_threads, initargs=(1,)) as pool:
        futures = {pool.submit(run, name, seed, args, out): (name, seed) for name, seed in pairs}
        try:
            return {futures[future]: on_result(future.result()) for future in as_completed(futures)}
        except BaseException:
            pool.shutdown(cancel_futures=True)  # the runs under way finish and keep their results; no new ones start
            raise


def run_all(pairs: list[tuple[str, int]], args, out: Path) -> dict[tuple[str, int], dict]:
    """Train and evaluate every (variant, seed) pair. The runs with a video loss, the longest, are started first so
    that the last to finish are short."""
    return run_in_processes(run_once, sorted(pairs, key=lambda pair: not trains_video(pair[0])), args, out, announce)


def widths(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(w) for w in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated channel counts such as 32,64,128, got {text!r}") from None


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--env", choices=tuple(ENV_DEFAULTS), default="metaworld",
                        help="the simulator of the study (aloha: bimanual TransferCube and Insertion, --tasks aloha)")
    parser.add_argument("--tasks", default="mt3", help="mt3, mt10, aloha or a comma-separated list")
    parser.add_argument("--episodes", type=int, default=20, help="demonstrations per task")
    parser.add_argument("--variants", default=",".join(DEFAULT_VARIANTS),
                        help=f"comma-separated, of {', '.join(VARIANTS)} (default: all but the prior's)")
    parser.add_argument("--prior", default=None,
                        help="checkpoint folder the prior_* variants post-train from, e.g. priors/metaworld-small")
    parser.add_argument("--seeds", type=int, default=3, help="training seeds per variant")
    parser.add_argument("--first-seed", type=int, default=0, help="run seeds first-seed .. first-seed + seeds - 1")
    parser.add_argument("--preset", default="small")
    parser.add_argument("--steps", type=int, default=None, help="optimiser steps per run (equal-steps budget)")
    parser.add_argument("--train-minutes", type=float, default=None, help="wall-clock minutes per run")
    parser.add_argument("--pretrain-steps", type=int, default=None,
                        help="video-only steps of the pre-training variants, before the whole budget of "
                             "post-training (default: half of the budget goes to each stage)")
    parser.add_argument("--extra-episodes", type=int, default=None,
                        help="demonstrations per task with actions withheld, for the pre-training variants "
                             "(default: --episodes)")
    parser.add_argument("--video-loss-weight", type=float, default=None,
                        help="weight of the video loss in the variants that train it (default: the preset's, 1)")
    parser.add_argument("--clean-action-prob", type=float, default=None,
                        help="fraction of the training samples of the variants with video whose action chunk is "
                             "given clean while their future is noised (video loss only; default: the preset's, 0)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--eval-episodes", type=int, default=20)
    parser.add_argument("--execute-steps", type=int, default=8,
                        help="actions executed per chunk (sync), or steps between chunks (ensemble; ACT: 1)")
    parser.add_argument("--execution", choices=("sync", ENSEMBLE), default="sync",
                        help="closed loop: execute the first --execute-steps actions of each chunk (sync), or at "
                             "every step the weighted mean of all chunks covering it (ensemble: ACT's temporal "
                             "ensembling)")
    parser.add_argument("--episode-steps", type=int, default=None,
                        help="evaluation time limit per episode (default: Meta-World 200, ALOHA 400)")
    parser.add_argument("--camera-size", type=int, nargs=2, default=None,
                        help="pixels (H W) of each recorded view (default: Meta-World 64 64, ALOHA 96 128)")
    parser.add_argument("--goal-marker-radius", type=float, default=None,
                        help="draw the goal sphere with this radius in metres, e.g. 0.05, in demonstrations and "
                             "evaluation (default: Meta-World's 2 cm, about a pixel in a 64x64 view)")
    parser.add_argument("--observe-goal", action="store_true",
                        help="append the goal's xyz to the state (7 numbers), as Meta-World's multi-task benchmarks "
                             "observe it; the policies are then no longer image-only")
    parser.add_argument("--observe-objects", action="store_true",
                        help="ALOHA: append the objects' xyz to the state (20 numbers: the cube or the peg, then the "
                             "socket); the policies are then no longer image-only")
    parser.add_argument("--action-noise", type=float, default=0.0,
                        help="std of the noise added to the experts' executed and recorded hand motions in all "
                             "demonstrations, so the future depends on the action chunk (default: none)")
    parser.add_argument("--action-noise-correlation", type=float, default=0.0,
                        help="step-to-step correlation of that noise in [0, 1), e.g. 0.9 (default: independent)")
    parser.add_argument("--image-size", type=int, nargs=2, default=None,
                        help="composite image (H W) the policy sees (default: the preset's)")
    parser.add_argument("--layout", choices=("t", "row"), default=None,
                        help="composite layout of the three views (default: t, head view on top)")
    parser.add_argument("--cnn-widths", type=widths, default=None,
                        help="channels of the CNN observation encoder's stride-2 stages, e.g. 32,64,128 (3 stages: "
                             "8-pixel features, the small preset's token size); default: the preset's 4 stages")
    parser.add_argument("--name", default=None,
                        help="names the output folder, the RESULTS section and the plot (default: the task set, e.g. "
                             "mt10); give another to keep a study with a different setup beside the main table")
    parser.add_argument("--out", default=None, help="runs and demonstrations (default outputs/learning/<name>)")
    parser.add_argument("--docs", default="docs", help="where RESULTS.md and the plot go")
    parser.add_argument("--jobs", type=int, default=1,
                        help="runs trained at once, in separate processes of one torch thread (at most the CPU cores)")
    parser.add_argument("--report-only", action="store_true", help="train nothing; report the stored results")
    parser.add_argument("--results-from", default=None, metavar="FILE",
                        help="the raw results an earlier session or machine reported (docs/learning-<name>.json): "
                             "its runs count as stored under OUT, so the study goes on from them")
    args = parser.parse_args()
    if args.jobs < 1:
        parser.error("--jobs must be at least 1")
    for option, default in ENV_DEFAULTS[args.env].items():
        if getattr(args, option) is None:
            setattr(args, option, default)
    for env, options in ENV_OPTIONS.items():
        given = [option for option in options if getattr(args, option) and env != args.env]
        if given:
            parser.error(f"--{given[0].replace('_', '-')} is a setting of {env} only; {args.env} has no such option")
    for option in ("pretrain_steps", "extra_episodes"):
        if getattr(args, option) is not None and getattr(args, option) < 1:
            parser.error(f"--{option.replace('_', '-')} must be at least 1")
    if args.video_loss_weight is not None and not args.video_loss_weight > 0:
        parser.error("--video-loss-weight must be positive (the variants without video are action_only and baseline)")
    if args.clean_action_prob is not None and not 0 < args.clean_action_prob < 1:
        parser.error("--clean-action-prob must lie between 0 and 1")
    try:
        env_settings(args)
    except ValueError as error:
        parser.error(str(error))
    if not args.steps and not args.train_minutes:
        parser.error("give a budget: --steps N, --train-minutes M, or both")
    args.task_list = TASK_SETS.get(args.tasks) or tuple(t for t in args.tasks.split(",") if t)
    # 'mt3', 'mt10' or the tasks joined by '+'
    args.task_set = args.tasks if args.tasks in TASK_SETS else "+".join(args.task_list)
    args.name = args.name or args.task_set
    args.out = args.out or f"outputs/learning/{args.name}"
    args.variant_list = [v for v in args.variants.split(",") if v]
    args.seed_list = range(args.first_seed, args.first_seed + args.seeds)
    unknown = sorted(set(args.variant_list) - set(VARIANTS))
    if unknown:
        parser.error(f"unknown variant(s) {unknown}; choose from {VARIANTS}")
    if bool(args.prior) != bool(set(FROM_PRIOR) & set(args.variant_list)):
        parser.error(f"--prior and the variants {', '.join(FROM_PRIOR)} go together")
    if args.prior and not (Path(args.prior) / WEIGHTS_NAME).is_file():
        parser.error(f"--prior {args.prior} is not a checkpoint folder (no {WEIGHTS_NAME} in it)")
    if args.cnn_widths:
        try:
            PolicyConfig.preset(args.preset).replace(cnn_widths=args.cnn_widths)
        except ValueError as error:
            parser.error(f"--cnn-widths: {error}")
    return args


def stored_runs(run, names, args, out: Path) -> dict[str, list[dict]]:
    """{name: run(name, seed, args, out) in seed order} for every seed stored under `out` of each name, whichever
    invocation (or session, restored by --results-from) ran it; `run` checks each against the study's setup."""
    results = {name: [run(name, seed, args, out) for seed in stored_seeds(out, name)] for name in names}
    results = {name: runs for name, runs in results.items() if runs}
    if not results:
        raise SystemExit(f"no stored results under {out / 'runs'}")
    return results


def study_command(argv: list[str]) -> list[str]:
    """The study's command line as RESULTS prints it: without the options that only say how this invocation ran
    (--report-only, --results-from FILE)."""
    kept, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--results-from":
            skip = True
        elif arg != "--report-only" and not arg.startswith("--results-from="):
            kept.append(arg)
    return kept


def main() -> None:
    args = parse_args()
    exit_cleanly_on_sigterm()
    torch.set_num_threads(1)
    out = Path(args.out)
    if args.results_from:
        restored = restore_results(Path(args.results_from), out)
        print(f"restored {len(restored)} run result(s) from {args.results_from}", flush=True)
    if not args.report_only:
        wanted = [(args.episodes, out / "demos", 0), (HELDOUT_EPISODES, out / HELDOUT_DEMOS, HELDOUT_SEED)]
        if set(PRETRAINED) & set(args.variant_list):
            wanted.append((args.extra_episodes or args.episodes, out / "extra_demos", 5000))
        for episodes, folder, seed in wanted:
            demonstrations(folder, args.task_list, episodes, seed, env_settings(args))
        policy = policy_config(args)
        if policy:  # the preset with another composite size, for every run
            write_text_atomically(out / POLICY_CONFIG, json.dumps(policy.to_dict(), indent=2))
        run_all([(variant, seed) for variant in args.variant_list for seed in args.seed_list], args, out)
    command = "python benchmarks/learning.py " + " ".join(study_command(sys.argv[1:]))
    settings = StudySettings(**{field.name: getattr(args, field.name) for field in fields(StudySettings)})
    write_learning(stored_runs(run_once, args.variant_list, args, out), settings, out, Path(args.docs), command)


if __name__ == "__main__":
    main()
