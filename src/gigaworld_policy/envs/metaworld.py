"""Meta-World (MuJoCo) tasks with multi-camera offscreen rendering, instructions and scripted experts.

Rendering uses one `mujoco.Renderer` for all cameras with the expensive effects off (multisampling,
shadows, reflections, skybox), which is ~15x faster than the defaults. The corner cameras render upside
down and are flipped. Offscreen rendering needs MUJOCO_GL=egl (or osmesa); we default to egl.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..config import did_you_mean
from ..data.lerobot import IMAGE_PREFIX
from ..extras import require
from .base import Observation, check_views

os.environ.setdefault("MUJOCO_GL", "egl")
# Meta-World's scripted experts warn at every step whose proportional command exceeds [-1, 1] (once per recorded
# episode on the screen); the command is clipped as it is meant to be, so the warning says nothing to our users.
warnings.filterwarnings("ignore", message=r"Constant\(s\) may be too high", category=UserWarning,
                        module=r"metaworld\.policies")

CAMERAS = ("corner", "corner2", "corner3", "corner4", "topview", "behindGripper", "gripperPOV")
FLIPPED = {"corner", "corner2", "corner3", "corner4"}
MOTION_DIMS = 3  # an action is the hand's (dx, dy, dz) then the gripper command
MT10 = ("reach-v3", "push-v3", "pick-place-v3", "door-open-v3", "drawer-open-v3", "drawer-close-v3",
        "button-press-topdown-v3", "peg-insert-side-v3", "window-open-v3", "window-close-v3")
# Before recordings held meta/environment.json (envs/recording.py) they held this file, and the first ones nothing.
LEGACY_FILE = "metaworld_collection.json"
LEGACY_SETTINGS = ("cameras", "image_size", "goal_marker_radius", "observe_goal", "action_noise",
                   "action_noise_correlation")
LEGACY_RUN = ("tasks", "episodes", "seed", "max_steps", "experts")

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


@dataclass(frozen=True)
class MetaWorldSettings:
    """How a Meta-World environment looks and how its demonstrations are recorded. `gwp collect metaworld` records
    these in the dataset and `gwp eval --dataset` rebuilds the same environment from them.

    Meta-World keeps the goal out of the state and draws it as a 2 cm sphere, one pixel or less in a 64x64 view, so an
    image policy can hardly find where to reach, push or place. `goal_marker_radius` draws it larger (the marker has
    no collision: only the picture changes); `observe_goal` puts it in the state as Meta-World's multi-task
    benchmarks give it to state-based policies, so the policy is no longer image-only (name it when reporting).
    `action_noise` makes a scripted expert's future depend on its actions, as a teleoperator's does (`ActionNoise`)."""

    cameras: tuple[str, ...] = ("corner", "corner2", "gripperPOV")
    """views in this order, of corner, corner2, corner3, corner4, topview, behindGripper, gripperPOV"""
    image_size: tuple[int, int] = (96, 96)
    """HEIGHT WIDTH of every camera, in pixels"""
    fps: int = 10
    """frames per second written into a recording"""
    goal_marker_radius: float | None = None
    """draw the goal sphere this large, in metres, e.g. 0.05 (only the picture changes; None: Meta-World's 2 cm)"""
    observe_goal: bool = False
    """append the goal's xyz to the state (7 numbers), as Meta-World's multi-task benchmarks observe it"""
    action_noise: float = 0.0
    """std of noise executed and recorded on the expert's hand motion, e.g. 0.5 (demonstrations; see ActionNoise)"""
    action_noise_correlation: float = 0.0
    """step-to-step correlation of that noise in [0, 1), e.g. 0.9 for noise that drifts ~10 steps"""

    def __post_init__(self) -> None:
        check_views(self.cameras, self.image_size, CAMERAS, "Meta-World")
        if not (isinstance(self.fps, int) and self.fps > 0):
            raise ValueError(f"fps must be a positive whole number, got {self.fps}")
        if self.goal_marker_radius is not None and not self.goal_marker_radius > 0:
            raise ValueError(f"goal_marker_radius must be a positive number of metres, got {self.goal_marker_radius}")
        ActionNoise(self.action_noise, self.action_noise_correlation, MOTION_DIMS)  # its checks

    @property
    def state_names(self) -> tuple[str, ...]:
        """Hand xyz and gripper opening, then the goal's xyz with `observe_goal`."""
        return ("x", "y", "z", "gripper") + (("goal_x", "goal_y", "goal_z") if self.observe_goal else ())

    @property
    def action_names(self) -> tuple[str, ...]:
        return ("dx", "dy", "dz", "grip")


def check_tasks(tasks: list[str]) -> None:
    """Refuse a list with any name Meta-World does not have, naming them all, before a run starts (a run that met
    each name only when it came to it would have run and written the tasks before it)."""
    metaworld = require("metaworld", "the Meta-World simulator")
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
    """One Meta-World task (a `Simulator`) as `settings` describe it, episodes of at most `max_steps` steps.
    `reset(seed)` draws the object/goal positions from `seed` (reproducible). Observations: the settings' cameras,
    state = hand xyz + gripper opening (obs[:4]), and the goal's xyz (obs[36:39]) with `observe_goal`."""

    action_dim = 4
    robot_type = "sawyer"
    evaluation_steps = 200  # this project's studies and main job (Meta-World's own limit is 500)

    def __init__(self, task: str, settings: MetaWorldSettings = MetaWorldSettings(), max_steps: int = 500):
        metaworld = require("metaworld", "the Meta-World simulator")
        mujoco = require("mujoco", "the Meta-World simulator")

        check_tasks([task])
        self.task, self.settings, self.max_steps = task, settings, max_steps
        self.cameras = settings.cameras
        benchmark = metaworld.MT1(task, seed=0)
        self.env = benchmark.train_classes[task]()
        self.env.set_task(benchmark.train_tasks[0])
        self.env.max_path_length = max_steps
        # Draw a fresh object/goal layout from the reset seed instead of the frozen benchmark one.
        self.env._freeze_rand_vec = False
        self.env.seeded_rand_vec = True
        if settings.goal_marker_radius is not None:
            self._draw_goal(settings.goal_marker_radius)
        self.env.model.vis.quality.offsamples = 0
        self.renderer = mujoco.Renderer(self.env.model, *settings.image_size)
        for flag in (mujoco.mjtRndFlag.mjRND_SHADOW, mujoco.mjtRndFlag.mjRND_REFLECTION,
                     mujoco.mjtRndFlag.mjRND_SKYBOX):
            self.renderer.scene.flags[flag] = False
        self._obs: np.ndarray | None = None
        self.steps = 0

    @staticmethod
    def check_tasks(tasks: list[str]) -> None:
        check_tasks(tasks)

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
        state = np.concatenate([self._obs[:4], self._obs[36:39]]) if self.settings.observe_goal else self._obs[:4]
        return Observation(images, state.astype(np.float32), instruction(self.task))

    def reset(self, seed: int) -> Observation:
        self.env.seed(seed)  # Meta-World ignores reset(seed=...); its layout comes from the env's own RNG
        self._obs, _ = self.env.reset()
        self.steps = 0
        return self.observe()

    @staticmethod
    def hold_action(last_action: np.ndarray) -> np.ndarray:
        """The action that keeps the robot still after `last_action`: no hand motion, the gripper command kept."""
        return np.concatenate([np.zeros(3, dtype=np.asarray(last_action).dtype), np.asarray(last_action)[3:]])

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

    def demonstrator(self, seed: int) -> Callable[[], np.ndarray]:
        """The expert with the settings' `ActionNoise`, drawn from `seed`, on its hand motion (see
        `noisy_expert_action`): how demonstrations are recorded."""
        noise = ActionNoise(self.settings.action_noise, self.settings.action_noise_correlation, MOTION_DIMS)
        noise.start(seed)
        return lambda: noisy_expert_action(self, noise)

    def close(self) -> None:
        self.renderer.close()
        self.env.close()


def noisy_expert_action(env: MetaWorldEnv, noise: ActionNoise) -> np.ndarray:
    """(4,) the expert's action with the next `noise` on its hand motion, clipped to [-1, 1]; the gripper command
    stays the expert's. How demonstrations are recorded (see `collect`)."""
    action = env.expert_action()
    action[:MOTION_DIMS] = np.clip(action[:MOTION_DIMS] + noise(), -1, 1)
    return action


def legacy_recording(dataset: Path, info: dict) -> dict | None:
    """The recording (in envs/recording.py's form) of a Meta-World dataset made before recordings held
    meta/environment.json: from its meta/LEGACY_FILE, or, for the first recordings, which wrote none, from info.json
    (`info`) alone; a setting the file lacks takes the value those recordings were made with. None for a dataset that
    Meta-World did not record."""
    from ..config import read_json
    from ..data.lerobot_meta import camera_size

    legacy = dataset / "meta" / LEGACY_FILE
    if not legacy.exists() and info.get("robot_type") != MetaWorldEnv.robot_type:
        return None
    cameras = [key.removeprefix(IMAGE_PREFIX) for key in info["features"]
               if key.startswith(IMAGE_PREFIX)]
    found = {"cameras": cameras, "fps": info["fps"],
             "observe_goal": info["features"].get("observation.state", {}).get("shape") == [7]}
    if cameras:
        spec = info["features"][IMAGE_PREFIX + cameras[0]]
        found["image_size"] = list(camera_size(spec, str(dataset / "meta" / "info.json")))
    recorded = read_json(legacy) if legacy.exists() else {}
    if not isinstance(recorded, dict):
        raise ValueError(f"{legacy} holds a {type(recorded).__name__}: expected the settings object `collect` wrote")
    settings = found | {key: recorded[key] for key in LEGACY_SETTINGS if key in recorded}
    return {"env": "metaworld", "settings": settings} | {key: recorded[key] for key in LEGACY_RUN if key in recorded}
