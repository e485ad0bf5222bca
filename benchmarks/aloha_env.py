"""Cost of one ALOHA control step: our environment (the policy's cameras only, effects off) against gym-aloha's own,
which renders three 640x480 cameras at every step, and the scripted experts' success and planning time.

    MUJOCO_GL=egl OMP_NUM_THREADS=1 python benchmarks/aloha_env.py [--steps 100] [--expert-episodes 20]

Prints a Markdown table (ms per control step: physics alone, and physics + the observation a policy reads).
"""

import argparse
import os
import platform
import time

import numpy as np

from gigaworld_policy.envs.aloha import AlohaEnv, AlohaSettings

os.environ.setdefault("MUJOCO_GL", "egl")


def per_step_ms(step, steps: int) -> float:
    step()  # first-call set-up (render contexts) is not the steady cost
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return 1000 * (time.perf_counter() - start) / steps


def ours(task: str, settings: AlohaSettings, steps: int, observe: bool) -> float:
    env = AlohaEnv(task, settings, max_steps=10**9)
    hold = env.reset(0).state

    def step():
        env.step(hold)
        if observe:
            env.observe()

    try:
        return per_step_ms(step, steps)
    finally:
        env.close()


def stock(task: str, steps: int) -> float:
    import gym_aloha  # noqa: F401 (registers the environments)
    import gymnasium as gym

    names = {"transfer-cube": "gym_aloha/AlohaTransferCube-v0", "insertion": "gym_aloha/AlohaInsertion-v0"}
    env = gym.make(names[task], obs_type="pixels_agent_pos", max_episode_steps=10**9)
    observation, _ = env.reset(seed=0)
    hold = np.asarray(observation["agent_pos"], dtype=np.float32)
    try:
        return per_step_ms(lambda: env.step(hold), steps)
    finally:
        env.close()


def experts(task: str, episodes: int) -> tuple[int, float]:
    """(successes on the joint replay, mean planning seconds) over seeds 0..episodes-1."""
    env = AlohaEnv(task, AlohaSettings(image_size=(24, 32)), max_steps=400)
    successes, planning = 0, []
    for seed in range(episodes):
        env.reset(seed)
        start = time.perf_counter()
        expert = env.demonstrator(seed)
        planning.append(time.perf_counter() - start)
        done = success = False
        while not done:
            success, done = env.step(expert())
        successes += success
    env.close()
    return successes, float(np.mean(planning))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--expert-episodes", type=int, default=20)
    args = parser.parse_args()
    print(f"Machine: {platform.machine()}, {os.cpu_count()} cores; OMP_NUM_THREADS="
          f"{os.environ.get('OMP_NUM_THREADS', 'unset')}, MUJOCO_GL={os.environ['MUJOCO_GL']}\n")
    print("| task | physics only | top 96x128 | top + 2 wrists 96x128 | top 240x320 | gym-aloha's own (3 x 640x480) |")
    print("|---|---|---|---|---|---|")
    for task in ("transfer-cube", "insertion"):
        row = [ours(task, AlohaSettings(), args.steps, observe=False),
               ours(task, AlohaSettings(), args.steps, observe=True),
               ours(task, AlohaSettings(cameras=("top", "left_wrist", "right_wrist")), args.steps, observe=True),
               ours(task, AlohaSettings(image_size=(240, 320)), args.steps, observe=True),
               stock(task, max(5, args.steps // 10))]
        print(f"| {task} | " + " | ".join(f"{ms:.1f} ms" for ms in row) + " |")
    print("\n| task | scripted expert: successes on the joint replay | planning per episode |")
    print("|---|---|---|")
    for task in ("transfer-cube", "insertion"):
        successes, planning = experts(task, args.expert_episodes)
        print(f"| {task} | {successes}/{args.expert_episodes} | {planning:.1f} s |")


if __name__ == "__main__":
    main()
