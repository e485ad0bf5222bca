"""Does a trained policy go where the goal is? For the Meta-World tasks whose goal is a free point drawn anew each
episode (reach: the hand goes there; push, pick-place: the puck does), roll a checkpoint out on held-out seeds and
fit, per axis, the final position of what should reach the goal against the goal: slope 1 follows the goal, slope 0
ignores it (it then succeeds only when the goal happens to lie where it always goes).

    python benchmarks/goal_following.py --checkpoint outputs/learning/mt10/runs/baseline-seed0/checkpoints/last \
        --tasks reach-v3,push-v3 --episodes 20 [--goal-marker-radius 0.05]
    python benchmarks/goal_following.py --expert --tasks reach-v3,push-v3   # the scripted expert, for reference
"""

import argparse

import numpy as np
import torch

from gigaworld_policy.envs.metaworld import MetaWorldEnv, MetaWorldSettings
from gigaworld_policy.envs.recording import read_recording
from gigaworld_policy.envs.registry import make_env
from gigaworld_policy.evaluate import env_maker, rollout
from gigaworld_policy.inference import Predictor

# Where, in Meta-World's 39-dim observation, the thing that must reach the goal is.
MOVED = {"reach-v3": ("hand", slice(0, 3)), "push-v3": ("puck", slice(4, 7)), "pick-place-v3": ("puck", slice(4, 7))}


def follow_fit(goals: np.ndarray, finals: np.ndarray) -> dict[str, list[float]]:
    """goals, finals: (N, 3). Per axis, the least-squares slope of final on goal and their correlation; NaN on an
    axis where the goal does not vary (e.g. push's goal height)."""
    goal_spread = goals - goals.mean(0)
    final_spread = finals - finals.mean(0)
    varies = goal_spread.std(0) > 1e-4
    covariance = (goal_spread * final_spread).sum(0)
    with np.errstate(divide="ignore", invalid="ignore"):
        slope = np.where(varies, covariance / (goal_spread**2).sum(0), np.nan)
        correlation = np.where(varies, covariance / np.sqrt((goal_spread**2).sum(0) * (final_spread**2).sum(0)), np.nan)
    return {"slope": slope.tolist(), "correlation": correlation.tolist()}


def numbers(values: list[float]) -> str:
    return ", ".join("—" if np.isnan(v) else f"{v:.2f}" for v in values)


def expert_rollout(env: MetaWorldEnv, seed: int) -> bool:
    """One episode of the task's scripted expert; returns whether it succeeded."""
    env.reset(seed)
    succeeded, done = False, False
    while not done:
        success, done = env.step(env.expert_action())
        succeeded |= success
    return succeeded


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", help="a checkpoint folder")
    source.add_argument("--expert", action="store_true", help="Meta-World's scripted expert instead of a policy")
    parser.add_argument("--camera-size", type=int, nargs=2, default=(64, 64), help="with --expert: pixels (H W)")
    parser.add_argument("--tasks", default="reach-v3", help=f"comma-separated, of {', '.join(MOVED)}")
    parser.add_argument("--episodes", type=int, default=20, help="held-out episodes per task (seeds from --seed)")
    parser.add_argument("--seed", type=int, default=1000)
    parser.add_argument("--execute-steps", type=int, default=8)
    parser.add_argument("--max-steps", type=int, default=200)
    parser.add_argument("--dataset", default=None,
                        help="the policy's demonstrations: roll out in the settings they were recorded with")
    parser.add_argument("--goal-marker-radius", type=float, default=None, help="as the demonstrations were recorded")
    parser.add_argument("--observe-goal", action="store_true", help="the goal's xyz in the state, as recorded")
    args = parser.parse_args()
    tasks = [t for t in args.tasks.split(",") if t]
    unknown = sorted(set(tasks) - set(MOVED))
    if unknown:
        parser.error(f"no free-point goal in {unknown}; choose from {list(MOVED)}")
    torch.set_num_threads(1)
    if args.expert:
        predictor, cameras, image_size = None, ("corner",), tuple(args.camera_size)
    else:
        predictor = Predictor.from_checkpoint(args.checkpoint)
        cameras, image_size = tuple(predictor.cameras), predictor.camera_sizes[0]
    if args.dataset:
        settings = read_recording(args.dataset).settings
    else:
        settings = MetaWorldSettings(cameras=cameras, image_size=image_size, goal_marker_radius=args.goal_marker_radius,
                                     observe_goal=args.observe_goal)
    print(f"{args.checkpoint or 'scripted expert'}, {args.episodes} episodes per task from seed {args.seed}, "
          f"goal marker radius {settings.goal_marker_radius or 'Meta-World default'}, goal in the state: "
          f"{settings.observe_goal}\n")
    print("| task | moved | successes | final distance to goal (m) | slope x, y, z | correlation x, y, z |")
    print("|---|---|---|---|---|---|")
    for task in tasks:
        env = (make_env(settings, task, args.max_steps) if predictor is None
               else env_maker(predictor, settings, args.max_steps)(task))
        moved, where = MOVED[task]
        goals, finals, successes = [], [], 0
        for episode in range(args.episodes):
            seed = args.seed + episode
            if predictor is None:
                successes += expert_rollout(env, seed)
            else:
                successes += rollout(predictor, env, seed, args.execute_steps)[0].success
            goals.append(env.goal)
            finals.append(env.raw_observation[where])
        env.close()
        goals, finals = np.array(goals), np.array(finals)
        fit = follow_fit(goals, finals)
        distance = np.linalg.norm(finals - goals, axis=1).mean()
        print(f"| {task} | {moved} | {successes}/{args.episodes} | {distance:.3f} | "
              f"{numbers(fit['slope'])} | {numbers(fit['correlation'])} |", flush=True)


if __name__ == "__main__":
    main()
