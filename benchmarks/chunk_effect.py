"""How much of the future frames does the action chunk decide? The most a video model can gain by reading it.

The video branch predicts the future frames from the observation and the action chunk. Whatever the observation
already determines it can learn without the chunk; only the part of the future that varies with the chunk, for the
same observation, rewards reading it. This measures that part on a learning study's own demonstration setup
(benchmarks/learning.py: the held-out demonstrations' recording settings, a run's composite and future-frame offsets):
for episodes of each task it records the (noisy) expert once, then from every `--every`-th frame t of it runs the
chunk again with an independent draw of the action noise — the same state at t (its actions replayed), the expert
reacting as it would — and compares the future frames t + stride, t + 2·stride, ... that the two chunks produce.
Two draws of the future given the same observation differ by twice its variance, so half their mean squared
difference (pixels in [-1, 1], the policy's composite) is the video error that reading the chunk perfectly could
remove; it is set against the error of repeating the current frame. With a noise-free scripted expert it is exactly
0: the observation decides the future.

    python benchmarks/chunk_effect.py --study outputs/learning/mt10-goal-state-noisy-12000steps --episodes 3
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from gigaworld_policy.data.composite import composite, default_layout, to_model_range
from gigaworld_policy.envs.base import episode_seed
from gigaworld_policy.envs.metaworld import MOTION_DIMS, ActionNoise, MetaWorldEnv, noisy_expert_action
from gigaworld_policy.envs.recording import Recording, read_recording
from gigaworld_policy.envs.registry import make_env, settings_to_dict
from gigaworld_policy.studies.report import chunk_effect_section, write_section
from gigaworld_policy.studies.results import HELDOUT_DEMOS, RESULT

OTHER_NOISE_SEED = 7_000_000  # offset of the second noise draw's seed from the episode's


def recording_setup(study: Path) -> tuple[Recording, dict]:
    """(how the held-out demonstrations were recorded, one run's stored setup) of a learning study."""
    heldout = study / HELDOUT_DEMOS
    results = sorted((study / "runs").glob(f"*/{RESULT}"))
    if not (heldout / "meta").is_dir() or not results:
        raise SystemExit(f"{study} is not a learning study with a finished run: expected {heldout} and "
                         f"{study / 'runs'}/<run>/result.json")
    return read_recording(heldout), json.loads(results[0].read_text())["setup"]


class Frames:
    """Renders an env's cameras as the policy's composite: (3, H, W) in [-1, 1]."""

    def __init__(self, cameras: list[str], layout: str, size: tuple[int, int]):
        self.cameras, self.layout, self.size = cameras, layout, size

    def __call__(self, env: MetaWorldEnv) -> torch.Tensor:
        views = [to_model_range(torch.from_numpy(env.render(camera))) for camera in self.cameras]
        return composite(views, self.layout, self.size)


def noisy_expert_step(env: MetaWorldEnv, noise: ActionNoise) -> tuple[np.ndarray, bool]:
    """Execute the expert's noisy action, as the demonstrations were recorded. Returns it and whether the episode is
    done."""
    action = noisy_expert_action(env, noise)
    return action, env.step(action)[1]


def physics_state(env: MetaWorldEnv) -> np.ndarray:
    """Joint positions and velocities (two renderings of one state can differ by a grey level)."""
    return np.concatenate([env.env.data.qpos, env.env.data.qvel])


def episode_effect(env: MetaWorldEnv, frames: Frames, seed: int, offsets: list[int],
                   every: int) -> tuple[list[float], list[float]]:
    """Per sampled frame t of one episode: (half the MSE between the futures of two chunks, the MSE of repeating
    frame t), over the future frames t + offsets, for the frames t whose futures all lie inside the episode. The
    noise is the env's settings' action noise, as the demonstrations were recorded."""
    std, correlation = env.settings.action_noise, env.settings.action_noise_correlation
    noise = ActionNoise(std, correlation, MOTION_DIMS).start(seed)
    env.reset(seed)
    actions, images, states, done = [], [frames(env)], [physics_state(env)], False
    while not done:
        action, done = noisy_expert_step(env, noise)
        actions.append(action)
        images.append(frames(env))
        states.append(physics_state(env))
    halves, static = [], []
    for t in range(0, len(images) - offsets[-1], every):
        env.reset(seed)
        for action in actions[:t]:  # deterministic physics: the recorded actions lead to the same state at t
            env.step(action)
        if not np.array_equal(physics_state(env), states[t]):
            raise RuntimeError(f"replaying seed {seed} to step {t} did not reach the recorded state")
        other_noise = ActionNoise(std, correlation, MOTION_DIMS).start(seed + OTHER_NOISE_SEED + t)
        other = []
        for step in range(1, offsets[-1] + 1):
            noisy_expert_step(env, other_noise)
            if step in offsets:
                other.append(frames(env))
        recorded = torch.stack([images[t + k] for k in offsets])
        halves.append(float(((recorded - torch.stack(other)) ** 2).mean()) / 2)
        static.append(float(((recorded - images[t]) ** 2).mean()))
    return halves, static


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--study", required=True, help="a learning study's output folder (learning.py's --out)")
    parser.add_argument("--episodes", type=int, default=3, help="per task, on the held-out demonstrations' seeds")
    parser.add_argument("--every", type=int, default=8, help="sample every N-th frame of an episode")
    parser.add_argument("--name", default=None, help="names the RESULTS section (default: the study folder's name)")
    parser.add_argument("--docs", default="docs", help="where RESULTS.md is")
    args = parser.parse_args()
    if args.episodes < 1 or args.every < 1:
        parser.error("--episodes and --every must be at least 1")
    torch.set_num_threads(1)
    study = Path(args.study)
    recording, setup = recording_setup(study)
    policy = setup["policy"]
    offsets = [policy["future_stride"] * k for k in range(1, policy["num_future_frames"] + 1)]
    cameras = list(recording.settings.cameras)
    frames = Frames(cameras, setup.get("layout") or default_layout(len(cameras)), tuple(policy["image_size"]))
    rows = {}
    for number, task in enumerate(recording.tasks):
        env = make_env(recording.settings, task, recording.max_steps)
        halves, static = [], []
        for attempt in range(args.episodes):  # the held-out demonstrations' first attempts
            more = episode_effect(env, frames, episode_seed(recording.seed, number, attempt), offsets, args.every)
            halves += more[0]
            static += more[1]
        env.close()
        if not halves:
            raise SystemExit(f"{task}: no frame of its {args.episodes} episodes has all its future frames inside the "
                             "episode; use more --episodes")
        rows[task] = (halves, static)
        print(f"{task}: chunk-decided {np.mean(halves):.4f}, repeat-the-frame {np.mean(static):.4f} "
              f"({len(halves)} frames)", flush=True)
    name = args.name or study.name
    command = "python benchmarks/chunk_effect.py " + " ".join(sys.argv[1:])
    write_section(Path(args.docs) / "RESULTS.md", "chunk-effect", name,
                  chunk_effect_section(name, rows, command, settings_to_dict(recording.settings), offsets))
    print(f"wrote the section 'chunk-effect {name}' of {Path(args.docs) / 'RESULTS.md'}")


if __name__ == "__main__":
    main()
