"""Recorded demonstrations: a simulator's scripted expert into a LeRobot dataset, with the environment's settings in
the dataset (meta/RECORDING_FILE) so that evaluation rebuilds the same environment.

    collect(MetaWorldSettings(image_size=(64, 64)), ["reach-v3"], episodes=20, out="data/mw")
    recording = read_recording("data/mw")   # .env "metaworld", .settings MetaWorldSettings(...), .tasks, ...

meta/RECORDING_FILE holds {"env": name, "settings": {...}, "tasks": [...], "episodes", "seed", "max_steps",
"experts": {task: expert success}}. Recordings made before it existed are converted as they are read (for Meta-World:
`metaworld.legacy_recording`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import read_json
from ..data.lerobot import IMAGE_PREFIX
from .base import EnvSettings, episode_seed
from .registry import environment, make_env, name_of, settings_from_dict, settings_to_dict

RECORDING_FILE = "environment.json"


@dataclass(frozen=True)
class Recording:
    """How a dataset was recorded: in which environment with which settings, and (where known) the collection's tasks,
    episodes per task, base seed, episode time limit and the expert's success rate per task."""

    env: str
    settings: EnvSettings
    tasks: tuple[str, ...] = ()
    episodes: int | None = None
    seed: int | None = None
    max_steps: int | None = None
    experts: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"env": self.env, "settings": settings_to_dict(self.settings), "tasks": list(self.tasks),
                "episodes": self.episodes, "seed": self.seed, "max_steps": self.max_steps, "experts": self.experts}

    @classmethod
    def from_dict(cls, data: Any, where: str) -> Recording:
        """The recording `to_dict` gave, checked; what is wrong is a sentence that names `where` it came from."""
        if not isinstance(data, dict) or not isinstance(data.get("env"), str):
            raise ValueError(f"{where} must hold an object with the environment's name under 'env', got {data!r:.80}")
        unknown = sorted(set(data) - {"env", "settings", "tasks", "episodes", "seed", "max_steps", "experts"})
        if unknown:
            raise ValueError(f"{where}: unknown keys {unknown}")
        settings = settings_from_dict(data["env"], data.get("settings", {}), where)
        return cls(data["env"], settings, tuple(data.get("tasks") or ()), data.get("episodes"), data.get("seed"),
                   data.get("max_steps"), data.get("experts") or {})


def read_recording(dataset: str | os.PathLike) -> Recording:
    """How the dataset at `dataset` was recorded (older recordings converted); a dataset that no environment
    recorded, or a damaged record, is a sentence that names the file."""
    from ..data.lerobot_meta import read_info
    from .metaworld import legacy_recording

    root = Path(dataset)
    path = root / "meta" / RECORDING_FILE
    if path.exists():
        data = read_json(path)
    else:
        data = legacy_recording(root, read_info(root))
        if data is None:
            raise ValueError(f"{root} records no environment ({path} is missing): it was not recorded by `gwp "
                             "collect`; give the environment's settings instead, e.g. `gwp eval metaworld --help`")
    return Recording.from_dict(data, str(path))


def collect(settings: EnvSettings, tasks: list[str], episodes: int, out: str | os.PathLike, seed: int = 0,
            max_steps: int = 500, progress: bool = True, keep_failures: bool = False) -> dict:
    """Record `episodes` successful demonstrations of the environment's scripted expert per task into a new LeRobot
    dataset at `out`, episodes of at most `max_steps` steps, with the `Recording` in meta/RECORDING_FILE.

    Each attempt's layout (and whatever the settings add to the expert, e.g. action noise) comes from
    `episode_seed(seed, task number, attempt)`; failed attempts are dropped and retried, or, with `keep_failures`
    (video for action-free pre-training, where what the arm does matters and not whether it succeeds), kept like the
    others. Returns {task: {"episodes", "attempts", "expert_success_rate"}}."""
    from tqdm import tqdm

    from ..data.lerobot import LeRobotDatasetWriter

    name = name_of(settings)
    simulator = environment(name).simulator
    simulator.check_tasks(tasks)  # all of them before anything is written
    height, width = settings.image_size
    features = {IMAGE_PREFIX + c: {"dtype": "video", "shape": [height, width, 3]} for c in settings.cameras}
    features["observation.state"] = {"dtype": "float32", "shape": [len(settings.state_names)],
                                     "names": list(settings.state_names)}
    features["action"] = {"dtype": "float32", "shape": [len(settings.action_names)],
                          "names": list(settings.action_names)}
    report = {}
    with LeRobotDatasetWriter.create(out, fps=settings.fps, features=features,
                                     robot_type=simulator.robot_type) as writer:
        bar = tqdm(total=episodes * len(tasks), desc="collecting", unit="episode", disable=not progress)
        for task_number, task in enumerate(tasks):
            env = make_env(settings, task, max_steps)
            kept = attempts = successes = 0
            while kept < episodes:
                if attempts >= 3 * episodes + 10 and not keep_failures:
                    raise RuntimeError(f"the {task} expert succeeded only {kept} times in {attempts} attempts "
                                       f"with {settings}")
                attempt_seed = episode_seed(seed, task_number, attempts)
                observation = env.reset(attempt_seed)
                expert = env.demonstrator(attempt_seed)
                attempts += 1
                while True:
                    action = expert()
                    writer.add_frame({**{IMAGE_PREFIX + c: observation.images[c] for c in settings.cameras},
                                      "observation.state": observation.state, "action": action,
                                      "task": observation.task})
                    success, done = env.step(action)
                    if done:
                        break
                    observation = env.observe()
                successes += success
                if success or keep_failures:
                    writer.save_episode()
                    kept += 1
                    bar.update()
                else:
                    writer.discard_episode()
            env.close()
            report[task] = {"episodes": kept, "attempts": attempts, "expert_success_rate": successes / attempts}
        bar.close()
        recording = Recording(name, settings, tuple(tasks), episodes, seed, max_steps, report)
        writer.finalize(extra_meta={RECORDING_FILE: recording.to_dict()})
    return report
