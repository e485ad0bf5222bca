"""Meta-World (MuJoCo) tasks with multi-camera offscreen rendering, instructions and scripted experts.

Rendering uses one `mujoco.Renderer` for all cameras with the expensive effects off (multisampling,
shadows, reflections, skybox), which is ~15x faster than the defaults. The corner cameras render upside
down and are flipped. Offscreen rendering needs MUJOCO_GL=egl (or osmesa); we default to egl.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from ..config import did_you_mean
from .base import Observation, episode_seed

os.environ.setdefault("MUJOCO_GL", "egl")

CAMERAS = ("corner", "corner2", "corner3", "corner4", "topview", "behindGripper", "gripperPOV")
FLIPPED = {"corner", "corner2", "corner3", "corner4"}
MOTION_DIMS = 3  # an action is the hand's (dx, dy, dz) then the gripper command
COLLECTION_FILE = "metaworld_collection.json"  # in a recorded dataset's meta/: the settings it was recorded with
# Recording settings added since the first datasets were recorded, with the value those were recorded with.
COLLECTION_DEFAULTS = {"goal_marker_radius": None, "observe_goal": False, "action_noise": 0.0,
                       "action_noise_correlation": 0.0}
MT10 = ("reach-v3", "push-v3", "pick-place-v3", "door-open-v3", "drawer-open-v3", "drawer-close-v3",
        "button-press-topdown-v3", "peg-insert-side-v3", "window-open-v3", "window-close-v3")

# One instruction per task; the name says what to do, the sentence says it to a language model.
INSTRUCTIONS = {
    "reach-v3": "reach the red goal position",
    "push-v3": "push the puck to the goal",
    "pick-place-v3": "pick up the puck and place it at the goal",
    "door-open-v3": "open the door",
    "door-close-v3": "close the door",
    "drawer-open-v3": "open the drawer",
    "drawer-close-v3": "close the drawer",
    "button-press-topdown-v3": "press the button from the top",
    "button-press-v3": "press the button",
    "peg-insert-side-v3": "insert the peg into the hole from the side",
    "window-open-v3": "slide the window open",
    "window-close-v3": "slide the window closed",
    "plate-slide-v3": "slide the plate into the goal",
    "coffee-button-v3": "press the button on the coffee machine",
    "faucet-open-v3": "turn the faucet on",
    "faucet-close-v3": "turn the faucet off",
    "handle-press-v3": "press the handle down",
    "lever-pull-v3": "pull the lever up",
}


def state_names(observe_goal: bool = False) -> tuple[str, ...]:
    """The numbers in a `MetaWorldEnv` state: hand xyz and gripper opening, then the goal's xyz with `observe_goal`."""
    return ("x", "y", "z", "gripper") + (("goal_x", "goal_y", "goal_z") if observe_goal else ())


def check_tasks(tasks: list[str]) -> None:
    """Refuse a list with any name Meta-World does not have, naming them all, before a run starts (a run that met
    each name only when it came to it would have run and written the tasks before it)."""
    import metaworld

    known = list(metaworld.ALL_V3_ENVIRONMENTS)
    unknown = [task for task in tasks if task not in known]
    if not tasks or unknown:
        named = ", ".join(repr(task) + did_you_mean(task, known) for task in unknown)
        raise ValueError((f"unknown Meta-World task{'s' * (len(unknown) > 1)} {named}" if unknown else "no task given")
                         + f"; Meta-World has {len(known)}, e.g. {known[:5]}")


def instruction(task: str) -> str:
    """The language instruction of a Meta-World task (a readable fallback from its name)."""
    return INSTRUCTIONS.get(task, task.removesuffix("-v3").replace("-", " "))


class MetaWorldEnv:
    """One Meta-World task (an `Env`). `reset(seed)` draws the object/goal positions from `seed` (reproducible).
    Observations: the chosen cameras, state = hand xyz + gripper opening (obs[:4]).

    The state leaves out where the goal is, and Meta-World draws it as a 2 cm sphere, one pixel or less in a 64x64
    view, so an image policy can hardly find where to reach, push or place. Two ways to show it, both off by default
    and both to be used alike in demonstrations and evaluation:
    - `goal_marker_radius` (metres) draws that sphere larger; it changes only the picture (the marker has no
      collision). None keeps Meta-World's own marker.
    - `observe_goal` appends the goal's xyz to the state (7 numbers), as Meta-World's multi-task benchmarks give it
      to state-based policies (obs[36:39]): no longer a pure image policy, so name it when reporting."""

    action_dim = 4

    def __init__(self, task: str, cameras: tuple[str, ...] = ("corner", "corner2", "gripperPOV"),
                 image_size: tuple[int, int] = (96, 96), max_steps: int = 500,
                 goal_marker_radius: float | None = None, observe_goal: bool = False):
        import metaworld
        import mujoco

        check_tasks([task])
        for camera in cameras:
            if camera not in CAMERAS:
                raise ValueError(f"unknown camera {camera!r}; Meta-World has {list(CAMERAS)}")
        if goal_marker_radius is not None and not goal_marker_radius > 0:
            raise ValueError(f"goal_marker_radius must be a positive number of metres, got {goal_marker_radius}")
        self.task, self.cameras, self.image_size, self.max_steps = task, tuple(cameras), image_size, max_steps
        self.observe_goal = observe_goal
        benchmark = metaworld.MT1(task, seed=0)
        self.env = benchmark.train_classes[task]()
        self.env.set_task(benchmark.train_tasks[0])
        self.env.max_path_length = max_steps
        # Draw a fresh object/goal layout from the reset seed instead of the frozen benchmark one.
        self.env._freeze_rand_vec = False
        self.env.seeded_rand_vec = True
        if goal_marker_radius is not None:
            self._draw_goal(goal_marker_radius)
        self.env.model.vis.quality.offsamples = 0
        self.renderer = mujoco.Renderer(self.env.model, *image_size)
        for flag in (mujoco.mjtRndFlag.mjRND_SHADOW, mujoco.mjtRndFlag.mjRND_REFLECTION,
                     mujoco.mjtRndFlag.mjRND_SKYBOX):
            self.renderer.scene.flags[flag] = False
        self._obs: np.ndarray | None = None
        self.steps = 0

    def _draw_goal(self, radius: float) -> None:
        import mujoco

        goal = mujoco.mj_name2id(self.env.model, mujoco.mjtObj.mjOBJ_SITE, "goal")
        if goal >= 0 and self.env.model.site_type[goal] == mujoco.mjtGeom.mjGEOM_SPHERE:  # not in e.g. button tasks
            self.env.model.site_size[goal, 0] = radius

    @property
    def goal(self) -> np.ndarray:
        """(3,) where the task's goal is this episode (in the policy's state only with `observe_goal`)."""
        return np.array(self.env._target_pos, dtype=np.float64)

    @property
    def raw_observation(self) -> np.ndarray:
        """(39,) Meta-World's own observation: hand xyz, gripper, first object xyz + quaternion, ..., goal xyz (the
        policy sees the first 4, and the last 3 with `observe_goal`)."""
        return self._obs.copy()

    def render(self, camera: str) -> np.ndarray:
        self.renderer.update_scene(self.env.data, camera=camera)
        image = self.renderer.render()
        return np.ascontiguousarray(image[::-1, ::-1]) if camera in FLIPPED else image.copy()

    def observe(self) -> Observation:
        images = {camera: self.render(camera) for camera in self.cameras}
        state = np.concatenate([self._obs[:4], self._obs[36:39]]) if self.observe_goal else self._obs[:4]
        return Observation(images, state.astype(np.float32), instruction(self.task))

    def reset(self, seed: int) -> Observation:
        self.env.seed(seed)  # Meta-World ignores reset(seed=...); its layout comes from the env's own RNG
        self._obs, _ = self.env.reset()
        self.steps = 0
        return self.observe()

    def step(self, action: np.ndarray) -> tuple[bool, bool]:
        """action (4,) in [-1, 1] -> (success, done)."""
        action = np.asarray(action, dtype=np.float64)
        if action.shape != (self.action_dim,) or not np.isfinite(action).all():
            raise ValueError(f"Meta-World action must be 4 finite numbers, got {action}")
        self._obs, _, terminated, truncated, info = self.env.step(np.clip(action, -1, 1))
        self.steps += 1
        success = bool(info["success"])
        return success, success or terminated or truncated or self.steps >= self.max_steps

    def expert_action(self) -> np.ndarray:
        """The scripted expert's action for the current state, clipped to the action space as executed."""
        from metaworld.policies import ENV_POLICY_MAP

        if not hasattr(self, "_expert"):
            self._expert = ENV_POLICY_MAP[self.task]()
        return np.clip(self._expert.get_action(self._obs), -1, 1).astype(np.float32)

    def close(self) -> None:
        self.renderer.close()
        self.env.close()


class ActionNoise:
    """Gaussian noise for the expert's actions, (dim,) per step, an AR(1) process
    n_t = ρ·n_{t-1} + sqrt(1-ρ²)·σ·ε_t whose every step has standard deviation σ (`std`) and correlates with the
    next by ρ (`correlation`).

    A scripted expert's action is a function of the observation, so in its demonstrations the observation alone
    determines the future frames and a video model has no reason to read the action chunk. Executed (and recorded)
    noise makes the future depend on the chunk, as it does for a human teleoperator. With ρ near 1 the noise drifts
    for about 1/(1-ρ) steps and moves the arm visibly, where independent steps would average out."""

    def __init__(self, std: float, correlation: float, dim: int):
        if not std >= 0:
            raise ValueError(f"action noise std must be a number >= 0, got {std}")
        if not 0 <= correlation < 1:
            raise ValueError(f"action noise correlation must lie in [0, 1), got {correlation}")
        self.std, self.correlation, self.dim = std, correlation, dim

    def start(self, seed: int) -> ActionNoise:
        """Begin an episode's noise, reproducible from `seed`, at a draw from the stationary distribution."""
        self.rng = np.random.default_rng(seed)
        self.value = self.std * self.rng.standard_normal(self.dim)
        return self

    def __call__(self) -> np.ndarray:
        """The next step's noise, (dim,)."""
        current = self.value
        innovation = np.sqrt(1 - self.correlation**2) * self.std * self.rng.standard_normal(current.shape)
        self.value = self.correlation * current + innovation
        return current


def noisy_expert_action(env: MetaWorldEnv, noise: ActionNoise) -> np.ndarray:
    """(4,) the expert's action with the next `noise` on its hand motion, clipped to [-1, 1]; the gripper command
    stays the expert's. How demonstrations are recorded (see `collect`)."""
    action = env.expert_action()
    action[:MOTION_DIMS] = np.clip(action[:MOTION_DIMS] + noise(), -1, 1)
    return action


def collect(tasks: list[str], episodes: int, out: str, cameras: tuple[str, ...] = ("corner", "corner2", "gripperPOV"),
            image_size: tuple[int, int] = (96, 96), seed: int = 0, max_steps: int = 500, fps: int = 10,
            progress: bool = True, goal_marker_radius: float | None = None, observe_goal: bool = False,
            action_noise: float = 0.0, action_noise_correlation: float = 0.0) -> dict:
    """Record `episodes` successful expert demonstrations per task into a new LeRobot dataset at `out`
    (`goal_marker_radius`, `observe_goal`: see `MetaWorldEnv`), with the settings in meta/COLLECTION_FILE.

    With `action_noise` > 0 the expert's hand motions (dx, dy, dz) get `ActionNoise` of that std and
    `action_noise_correlation` before they are clipped to [-1, 1], executed and recorded: the dataset holds what the
    arm was commanded. The gripper command stays the expert's: noise there drops objects rather than varying motion.

    Each attempt's layout and noise come from `episode_seed(seed, task number, attempt)`; failed attempts are
    dropped and retried. Returns the success rate of the expert per task."""
    from tqdm import tqdm

    from ..data.lerobot import LeRobotDatasetWriter

    noise = ActionNoise(action_noise, action_noise_correlation, MOTION_DIMS)  # checked before anything is written
    height, width = image_size
    features = {f"observation.images.{c}": {"dtype": "video", "shape": [height, width, 3]} for c in cameras}
    names = state_names(observe_goal)
    features["observation.state"] = {"dtype": "float32", "shape": [len(names)], "names": list(names)}
    features["action"] = {"dtype": "float32", "shape": [4], "names": ["dx", "dy", "dz", "grip"]}
    report = {}
    with LeRobotDatasetWriter.create(out, fps=fps, features=features, robot_type="sawyer") as writer:
        bar = tqdm(total=episodes * len(tasks), desc="collecting", unit="episode", disable=not progress)
        for task_number, task in enumerate(tasks):
            env = MetaWorldEnv(task, cameras, image_size, max_steps, goal_marker_radius, observe_goal)
            kept = attempts = 0
            while kept < episodes:
                if attempts >= 3 * episodes + 10:
                    hint = f" with action noise of std {action_noise:g}: use less" if action_noise else ""
                    raise RuntimeError(f"the {task} expert succeeded only {kept} times in {attempts} attempts{hint}")
                attempt_seed = episode_seed(seed, task_number, attempts)
                observation = env.reset(attempt_seed)
                noise.start(attempt_seed)
                attempts += 1
                while True:
                    action = noisy_expert_action(env, noise)
                    writer.add_frame({**{f"observation.images.{c}": observation.images[c] for c in cameras},
                                      "observation.state": observation.state, "action": action,
                                      "task": observation.task})
                    success, done = env.step(action)
                    if done:
                        break
                    observation = env.observe()
                if success:
                    writer.save_episode()
                    kept += 1
                    bar.update()
                else:
                    writer.discard_episode()
            env.close()
            report[task] = {"episodes": kept, "attempts": attempts, "expert_success_rate": kept / attempts}
        bar.close()
        settings = {"tasks": list(tasks), "episodes": episodes, "cameras": list(cameras),
                    "image_size": list(image_size), "seed": seed, "max_steps": max_steps,
                    "goal_marker_radius": goal_marker_radius, "observe_goal": observe_goal,
                    "action_noise": action_noise, "action_noise_correlation": action_noise_correlation,
                    "experts": report}
        writer.finalize(extra_meta={COLLECTION_FILE: settings})
    return report


def collection_settings(dataset: str | os.PathLike) -> dict:
    """The settings `collect` recorded the dataset at `dataset` with; a setting that an older recording's file lacks
    (or the whole file) takes the value such recordings were made with (COLLECTION_DEFAULTS)."""
    meta = Path(dataset) / "meta"
    if not meta.is_dir():
        raise FileNotFoundError(f"{dataset} is not a recorded dataset: it has no meta/ folder")
    settings = meta / COLLECTION_FILE
    if not settings.exists():
        return dict(COLLECTION_DEFAULTS)
    try:
        recorded = json.loads(settings.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{settings} is not valid JSON ({error}): expected the settings `collect` wrote") from None
    if not isinstance(recorded, dict):
        raise ValueError(f"{settings} holds a {type(recorded).__name__}: expected the settings object `collect` wrote")
    return COLLECTION_DEFAULTS | recorded
