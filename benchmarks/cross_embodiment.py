"""Does one transformer shared by two robots cost or help either? A policy trained on Meta-World and bimanual ALOHA
together against the two single-robot policies, at equal total budget.

Runs, per training seed (OUT/runs/<run>-seed<k>/result.json):
    metaworld   --steps N on the Meta-World demonstrations (Sawyer: 4-d actions, three 96x96 views)
    aloha       --steps N on the ALOHA demonstrations (14-d joint positions, one 96x128 top view, 50 Hz)
    shared      2N steps on both, each robot drawn half of the time (the two single policies' budget together):
                one embodiment per robot (its own state/action projectors, processor and composite) around one
                transformer
All three train the network of --variant (default gwp_cnn, the main job's: CNN observation encoder, video and
action losses). Each policy is evaluated on its robots' tasks: closed-loop on --eval-episodes held-out seeds per
task (from 1000), acting as each environment's robot, and open-loop on 5 more demonstrations per task on layouts
seen neither in training nor in evaluation (the held-out action error: at a budget that does not solve ALOHA, the
figure that still moves). The section cross-embodiment <name> of docs/RESULTS.md gets, per robot, alone against
shared with 95% intervals over training seeds and pooled over episodes; docs/cross-embodiment-<name>.json every
result raw (commit it; `--results-from` brings its runs back in a later session, as for benchmarks/learning.py).
A run whose result exists is not run again; a stored result made with other settings is refused.

    python benchmarks/cross_embodiment.py --steps 2000 --seeds 3 --eval-episodes 10 --jobs 2
"""

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from learning import (
    HELDOUT_SEED,
    TASK_SETS,
    demonstrations,
    evaluate_checkpoint,
    open_loop_heldout,
    run_in_processes,
    run_options,
    stored_runs,
    study_command,
    train_stage,
)

from gigaworld_policy.atomic import exit_cleanly_on_sigterm, write_text_atomically
from gigaworld_policy.envs.aloha import TASKS as ALOHA_TASKS
from gigaworld_policy.envs.aloha import AlohaSettings
from gigaworld_policy.envs.base import EnvSettings
from gigaworld_policy.envs.metaworld import MetaWorldSettings
from gigaworld_policy.envs.registry import ENVIRONMENTS
from gigaworld_policy.execution import ENSEMBLE
from gigaworld_policy.studies.report import SIMULATORS, cross_embodiment_section, execution_words, write_section
from gigaworld_policy.studies.results import (
    HELDOUT_DEMOS,
    HELDOUT_EPISODES,
    RESULT,
    restore_results,
    run_folder,
    setup_differences,
)
from gigaworld_policy.studies.variants import FROM_PRIOR, PRETRAINED, VARIANTS
from gigaworld_policy.train import TrainConfig

ROBOTS = ("metaworld", "aloha")  # the registered environments, each one robot
RUNS = {"metaworld": ("metaworld",), "aloha": ("aloha",), "shared": ROBOTS}  # run -> the robots it trains on
ONE_STAGE_VARIANTS = tuple(v for v in VARIANTS if v not in PRETRAINED + FROM_PRIOR)
SETUP_KEYS = ("metaworld_tasks", "aloha_tasks", "metaworld_episodes", "aloha_episodes", "observe_goal",
              "observe_objects", "variant",
              "preset", "steps", "batch_size", "lr", "eval_episodes", "execute_steps", "execution")


def robot_settings(robot: str, args) -> EnvSettings:
    """The settings a robot's demonstrations are recorded with and its policies evaluated in."""
    if robot == "metaworld":
        return MetaWorldSettings(observe_goal=args.observe_goal)
    return AlohaSettings(observe_objects=args.observe_objects)


def robot_tasks(robot: str, args) -> tuple[str, ...]:
    return args.metaworld_tasks if robot == "metaworld" else args.aloha_tasks


def run_once(run: str, seed: int, args, out: Path) -> dict:
    """Train and evaluate one (run, seed), or return its stored result."""
    folder = run_folder(out, run, seed)
    options = run_options(args.variant, args, seed)
    setup = {key: getattr(args, key) for key in SETUP_KEYS} | {"policy": TrainConfig(**options).policy().to_dict()}
    setup = json.loads(json.dumps(setup))  # tuples -> lists, as they come back from the file
    if (folder / RESULT).exists():
        stored = json.loads((folder / RESULT).read_text())
        changed = setup_differences(stored["setup"], setup)
        if changed:
            raise SystemExit(f"{folder / RESULT} was made with other settings ({', '.join(changed)}); use another "
                             "--out or delete it")
        return stored
    robots = RUNS[run]
    started = time.monotonic()
    config = TrainConfig(dataset=tuple(str(out / "demos" / robot) for robot in robots), output_dir=str(folder),
                         dataset_weights=(1.0,) * len(robots) if len(robots) > 1 else (),
                         steps=args.steps * len(robots), **options)
    checkpoint, resumed = train_stage(config)
    train_minutes = (time.monotonic() - started) / 60
    reports = {}
    for robot in robots:
        report = evaluate_checkpoint(checkpoint, robot_settings(robot, args), list(robot_tasks(robot, args)),
                                     args.eval_episodes, args.execute_steps,
                                     ENVIRONMENTS[robot].simulator.evaluation_steps, execution=args.execution)
        reports[robot] = {**report, "open_loop_heldout": open_loop_heldout(checkpoint, out / HELDOUT_DEMOS / robot)}
    result = {"run": run, "seed": seed, "setup": setup, "steps": int(checkpoint.name),
              "resumed": resumed, "train_minutes": train_minutes, "robots": reports}
    write_text_atomically(folder / RESULT, json.dumps(result, indent=2))
    return result


def announce(result: dict) -> dict:
    rates = ", ".join(f"{SIMULATORS[robot]} {100 * report['average_success_rate']:.0f}%"
                      for robot, report in result["robots"].items())
    print(f"{result['run']} seed {result['seed']}: {rates} ({result['steps']} steps, "
          f"{result['train_minutes']:.1f} min)", flush=True)
    return result


def run_all(pairs: list[tuple[str, int]], args, out: Path) -> None:
    """Train and evaluate every (run, seed), the shared runs (twice the steps) first."""
    run_in_processes(run_once, sorted(pairs, key=lambda pair: pair[0] != "shared"), args, out, announce)


def views(settings: EnvSettings) -> str:
    """E.g. "the views corner, corner2, gripperPOV at 96x96"."""
    height, width = settings.image_size
    return f"the view{'s' if len(settings.cameras) > 1 else ''} {', '.join(settings.cameras)} at {height}x{width}"


def about(args) -> str:
    """The study's setup in words, for its section."""
    goal = ", the goal's xyz in the Meta-World state (not image-only)" if args.observe_goal else ""
    objects = (", the objects' xyz in the ALOHA state (20 numbers, not image-only)" if args.observe_objects
               else ", 14-d joint-position state")
    execution = execution_words(args.execution, args.execute_steps)
    return (f"Meta-World {', '.join(args.metaworld_tasks)} ({args.metaworld_episodes} expert demonstrations per "
            f"task, {views(robot_settings('metaworld', args))}{goal}) and ALOHA {', '.join(args.aloha_tasks)} "
            f"({args.aloha_episodes} scripted demonstrations per task, {views(robot_settings('aloha', args))}"
            f"{objects}; 14-d joint-position actions). "
            f"`{args.variant}` on the `{args.preset}` preset, batch {args.batch_size}, learning rate {args.lr:g}: "
            f"each single-robot policy {args.steps} optimiser steps, the shared one {2 * args.steps} with each robot "
            f"drawn half of the time. Closed loop: {args.eval_episodes} held-out episodes per task (seeds from 1000), "
            f"{execution}, the simulators' episode limits (Meta-World 200 steps, ALOHA 400). "
            f"Held-out action MSE: open-loop error of the sampled chunk (normalised units, EMA weights) on "
            f"{HELDOUT_EPISODES} more demonstrations per task.")


def task_list(text: str) -> tuple[str, ...]:
    return TASK_SETS.get(text) or tuple(t for t in text.split(",") if t)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--metaworld-tasks", type=task_list, default=TASK_SETS["mt3"], help="mt3, mt10 or a list")
    parser.add_argument("--aloha-tasks", type=task_list, default=("transfer-cube",),
                        help=f"comma-separated, of {', '.join(ALOHA_TASKS)}")
    parser.add_argument("--metaworld-episodes", type=int, default=20, help="demonstrations per Meta-World task")
    parser.add_argument("--aloha-episodes", type=int, default=50, help="demonstrations per ALOHA task")
    parser.add_argument("--observe-goal", action=argparse.BooleanOptionalAction, default=True,
                        help="the goal's xyz in the Meta-World state, as the main job observes it (default: on)")
    parser.add_argument("--observe-objects", action=argparse.BooleanOptionalAction, default=True,
                        help="the objects' xyz in the ALOHA state, as the ALOHA policy that solved TransferCube "
                             "observed it (default: on)")
    parser.add_argument("--variant", choices=ONE_STAGE_VARIANTS, default="gwp_cnn",
                        help="the network and losses of every run (benchmarks/learning.py's variants)")
    parser.add_argument("--preset", default="small")
    parser.add_argument("--steps", type=int, default=2000, help="optimiser steps per robot")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--seeds", type=int, default=3, help="training seeds per run")
    parser.add_argument("--first-seed", type=int, default=0, help="run seeds first-seed .. first-seed + seeds - 1")
    parser.add_argument("--eval-episodes", type=int, default=10, help="held-out episodes per task")
    parser.add_argument("--execute-steps", type=int, default=8,
                        help="actions executed per chunk (sync), or steps between chunks (ensemble; ACT: 1)")
    parser.add_argument("--execution", choices=("sync", ENSEMBLE), default="sync",
                        help="closed loop: the first --execute-steps actions of each chunk (sync), or ACT's temporal "
                             "ensembling of the chunks covering each step (ensemble)")
    parser.add_argument("--name", default="mt3+transfer-cube", help="names the RESULTS section and the raw results")
    parser.add_argument("--out", default=None, help="runs and demonstrations (default outputs/cross-embodiment/<name>)")
    parser.add_argument("--docs", default="docs", help="where RESULTS.md and the raw results go")
    parser.add_argument("--jobs", type=int, default=1, help="runs trained at once (at most the CPU cores)")
    parser.add_argument("--report-only", action="store_true", help="train nothing; report the stored results")
    parser.add_argument("--results-from", default=None, metavar="FILE",
                        help="raw results an earlier session reported (docs/cross-embodiment-<name>.json)")
    # what learning.run_options reads besides: this study trains the preset as it is, on a step budget
    parser.set_defaults(train_minutes=None, layout=None, cnn_widths=None, image_size=None, video_loss_weight=None,
                        clean_action_prob=None)
    args = parser.parse_args()
    unknown = [t for t in args.aloha_tasks if t not in ALOHA_TASKS]
    if unknown:
        parser.error(f"unknown ALOHA task(s) {unknown}; choose from {list(ALOHA_TASKS)}")
    for option in ("steps", "seeds", "jobs", "eval_episodes", "metaworld_episodes", "aloha_episodes"):
        if getattr(args, option) < 1:
            parser.error(f"--{option.replace('_', '-')} must be at least 1")
    args.out = args.out or f"outputs/cross-embodiment/{args.name}"
    return args


def main() -> None:
    args = parse_args()
    exit_cleanly_on_sigterm()
    torch.set_num_threads(1)
    out, docs = Path(args.out), Path(args.docs)
    raw = docs / f"cross-embodiment-{args.name}.json"
    if args.results_from:
        restored = restore_results(Path(args.results_from), out)
        print(f"restored {len(restored)} run result(s) from {args.results_from}", flush=True)
    if not args.report_only:
        for robot in ROBOTS:
            settings, tasks = robot_settings(robot, args), robot_tasks(robot, args)
            episodes = args.metaworld_episodes if robot == "metaworld" else args.aloha_episodes
            demonstrations(out / "demos" / robot, tasks, episodes, 0, settings)
            demonstrations(out / HELDOUT_DEMOS / robot, tasks, HELDOUT_EPISODES, HELDOUT_SEED, settings)
        seeds = range(args.first_seed, args.first_seed + args.seeds)
        run_all([(run, seed) for run in RUNS for seed in seeds], args, out)
    results = stored_runs(run_once, RUNS, args, out)
    command = "python benchmarks/cross_embodiment.py " + " ".join(study_command(sys.argv[1:]))
    robots = {robot: robot_tasks(robot, args) for robot in ROBOTS}
    write_section(docs / "RESULTS.md", "cross-embodiment", args.name,
                  cross_embodiment_section(args.name, results, robots, about(args), command))
    write_text_atomically(raw, json.dumps(results, indent=2))
    print(f"wrote the section cross-embodiment {args.name} of {docs / 'RESULTS.md'} and {raw}")


if __name__ == "__main__":
    main()
