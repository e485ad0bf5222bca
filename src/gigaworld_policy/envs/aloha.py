"""Bimanual ALOHA in simulation (the PyPI package gym-aloha: two ViperX arms in MuJoCo through dm_control), as ACT
and LeRobot's `aloha_sim_*` datasets use it: TransferCube and Insertion, 14-d joint-position actions and state
(per arm six joint angles, then the gripper opening in [0, 1]), 50 Hz, success when the package's reward reaches 4.
`observe_objects` adds the objects' positions to the state (privileged state, as Meta-World's `observe_goal`).

The package's own environment renders three 640x480 cameras at every physics step (about a second per control step
on a CPU); this one drives the package's scenes and task rules directly and renders only the cameras a policy uses,
at its size, with shadows, reflections and multisampling off. The scenes' cameras: top, angle, front_close,
left_pillar, right_pillar and the wrist cameras left_wrist and right_wrist. LeRobot's datasets hold `top` only.

Scripted experts: envs/aloha_expert.py.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..config import did_you_mean
from ..extras import require
from .base import Observation, check_views

os.environ.setdefault("MUJOCO_GL", "egl")

CAMERAS = ("top", "angle", "front_close", "left_pillar", "right_pillar", "left_wrist", "right_wrist")
ARM_JOINTS = ("waist", "shoulder", "elbow", "forearm_roll", "wrist_angle", "wrist_rotate", "gripper")
JOINT_NAMES = tuple(f"{arm}_{joint}" for arm in ("left", "right") for joint in ARM_JOINTS)
# with `observe_objects`: the xyz of the cube or the peg, then of the socket (zeros in TransferCube, which has one)
OBJECT_NAMES = tuple(f"{thing}_{axis}" for thing in ("object", "second_object") for axis in "xyz")
SUBSTEPS = 10  # physics steps (0.002 s) per control step (0.02 s)
SUCCESS_REWARD = 4  # the package's tasks count 0..4; 4 is the transfer or the insertion done


@dataclass(frozen=True)
class Task:
    scene: str  # the package's joint-position scene
    instruction: str
    objects: int  # free bodies placed at reset (7 numbers each: xyz + quaternion)
    stages: tuple[str, ...]  # what the package's rewards 1..4 mean (4: success), the stages ACT reports


TASKS = {
    "transfer-cube": Task("bimanual_viperx_transfer_cube.xml",
                          "pick up the red cube with the right arm and hand it over to the left arm", 1,
                          ("touched", "lifted", "transfer attempted", "transferred")),
    "insertion": Task("bimanual_viperx_insertion.xml",
                      "pick up the socket with the left arm and the peg with the right arm, and insert the peg into "
                      "the socket", 2, ("touched both", "grasped both", "peg touches socket", "inserted")),
}


@dataclass(frozen=True)
class AlohaSettings:
    """How an ALOHA environment looks. `gwp collect aloha` records these in the dataset and `gwp eval --dataset`
    rebuilds the same environment from them."""

    cameras: tuple[str, ...] = ("top",)
    """views in this order, of top, angle, front_close, left_pillar, right_pillar, left_wrist, right_wrist"""
    image_size: tuple[int, int] = (96, 128)
    """HEIGHT WIDTH of every camera, in pixels (the scenes' cameras are 4:3)"""
    fps: int = 50
    """frames per second written into a recording (the simulation runs at 50 Hz)"""
    observe_objects: bool = False
    """append the objects' xyz to the state (20 numbers instead of 14): the cube or the peg, then the socket (zeros
    in TransferCube), where the simulation has them now, as a policy on privileged state sees them; the policy is
    then no longer image-only"""

    def __post_init__(self) -> None:
        check_views(self.cameras, self.image_size, CAMERAS, "ALOHA")
        if self.fps != 50:
            raise ValueError(f"fps must be 50, the rate the ALOHA simulation runs at, got {self.fps}")

    @property
    def state_names(self) -> tuple[str, ...]:
        return JOINT_NAMES + (OBJECT_NAMES if self.observe_objects else ())

    @property
    def action_names(self) -> tuple[str, ...]:
        return JOINT_NAMES


def check_tasks(tasks: list[str]) -> None:
    """Refuse a list with any task the ALOHA simulation does not have, naming them all."""
    unknown = [task for task in tasks if task not in TASKS]
    if not tasks or unknown:
        named = ", ".join(repr(task) + did_you_mean(task, list(TASKS)) for task in unknown)
        raise ValueError((f"unknown ALOHA task{'s' * (len(unknown) > 1)} {named}" if unknown else "no task given")
                         + f"; ALOHA has {list(TASKS)}")


def object_poses(task: str, seed: int) -> np.ndarray:
    """(7 * objects,) where the package places the task's objects for `seed`: the cube, or the peg then the socket
    (xyz + quaternion each)."""
    utils = require("gym_aloha.utils", "the ALOHA simulator")
    return utils.sample_box_pose(seed) if task == "transfer-cube" else np.concatenate(utils.sample_insertion_pose(seed))


class UnstableSimulation(RuntimeError):
    """The physics diverged (MuJoCo's accelerations became non-finite) under a commanded motion."""


class Scene:
    """The package's joint-position scene of one task: its physics and its task rules (control, reward), without the
    package's rendering. Also what the scripted experts replay their plans in."""

    def __init__(self, task: str):
        require("gym_aloha", "the ALOHA simulator")
        from dm_control import mujoco
        from gym_aloha.constants import ASSETS_DIR
        from gym_aloha.tasks.sim import InsertionTask, TransferCubeTask

        check_tasks([task])
        self.task = task
        self.physics = mujoco.Physics.from_xml_path(str(ASSETS_DIR / TASKS[task].scene))
        self.rules = TransferCubeTask() if task == "transfer-cube" else InsertionTask()

    def reset(self, objects: np.ndarray) -> None:
        """The arms at the package's start pose, the objects at `objects` (see `object_poses`)."""
        from gym_aloha.constants import START_ARM_POSE

        with self.physics.reset_context():
            self.physics.data.qpos[:16] = START_ARM_POSE
            self.physics.data.ctrl[:] = START_ARM_POSE
            self.physics.data.qpos[16:16 + len(objects)] = objects

    def step(self, action: np.ndarray) -> int:
        """Apply one (14,) joint-position action for one control step -> the package's reward (0..4). Raises
        UnstableSimulation, the scene put back as it was before the step, when the motion makes MuJoCo diverge."""
        from dm_control.rl.control import PhysicsError

        before = self.physics.get_state()
        self.rules.before_step(action, self.physics)
        try:
            self.physics.step(SUBSTEPS)
        except PhysicsError as error:
            self.physics.set_state(before)
            raise UnstableSimulation(f"the {self.task} simulation diverged under the action {np.round(action, 3)}: "
                                     f"{error}") from error
        return self.rules.get_reward(self.physics)

    def state(self) -> np.ndarray:
        """(14,) joint angles and gripper openings, as the package observes them."""
        return self.rules.get_qpos(self.physics)

    def object_positions(self) -> np.ndarray:
        """(len(OBJECT_NAMES),) the xyz of the task's objects now, zeros for the slots the task has no object for
        (each free body holds 7 numbers of qpos after the arms' 16: xyz + quaternion)."""
        objects = TASKS[self.task].objects
        positions = np.zeros((len(OBJECT_NAMES) // 3, 3))
        positions[:objects] = self.physics.data.qpos[16:16 + 7 * objects].reshape(objects, 7)[:, :3]
        return positions.ravel()


class AlohaEnv:
    """One ALOHA task (a `Simulator`) as `settings` describe it, episodes of at most `max_steps` control steps (ACT
    and LeRobot evaluate with 400). `reset(seed)` places the objects as the package does for `seed`."""

    action_dim = 14
    robot_type = "aloha"
    evaluation_steps = 400  # the package's episode length, as ACT and LeRobot evaluate

    def __init__(self, task: str, settings: AlohaSettings = AlohaSettings(), max_steps: int = evaluation_steps):
        self.scene = Scene(task)  # checks that gym-aloha, and with it MuJoCo, is installed
        import mujoco

        self.task, self.settings, self.max_steps = task, settings, max_steps
        self.cameras = settings.cameras
        model = self.scene.physics.model.ptr
        model.vis.quality.offsamples = 0
        # The renderer's framebuffer must hold the image; the scenes ask for 640x480 at most.
        model.vis.global_.offheight = max(model.vis.global_.offheight, settings.image_size[0])
        model.vis.global_.offwidth = max(model.vis.global_.offwidth, settings.image_size[1])
        self.renderer = mujoco.Renderer(model, *settings.image_size)
        for flag in (mujoco.mjtRndFlag.mjRND_SHADOW, mujoco.mjtRndFlag.mjRND_REFLECTION,
                     mujoco.mjtRndFlag.mjRND_SKYBOX):
            self.renderer.scene.flags[flag] = False
        self.steps = 0
        self.stage = 0  # the highest of the task's `stages` reached this episode (1-based; 0: none yet)
        self.diverged = False  # whether this episode ended because the simulation diverged
        self.seed: int | None = None

    @property
    def stages(self) -> tuple[str, ...]:
        """The task's stages in order, the last one success (see `stage`)."""
        return TASKS[self.task].stages

    @staticmethod
    def check_tasks(tasks: list[str]) -> None:
        check_tasks(tasks)

    def render(self, camera: str) -> np.ndarray:
        self.renderer.update_scene(self.scene.physics.data.ptr, camera=camera)
        return self.renderer.render().copy()

    def observe(self) -> Observation:
        images = {camera: self.render(camera) for camera in self.cameras}
        state = self.scene.state()
        if self.settings.observe_objects:
            state = np.concatenate([state, self.scene.object_positions()])
        return Observation(images, state.astype(np.float32), TASKS[self.task].instruction)

    def reset(self, seed: int) -> Observation:
        self.seed = seed
        self.scene.reset(object_poses(self.task, seed))
        self.steps = self.stage = 0
        self.diverged = False
        return self.observe()

    @staticmethod
    def hold_action(last_action: np.ndarray) -> np.ndarray:
        """Joint-position control: commanding the last position again holds the arms where they are going."""
        return np.array(last_action, copy=True)

    def step(self, action: np.ndarray) -> tuple[bool, bool]:
        """action (14,) joint positions (radians) and gripper openings -> (success, done)."""
        action = np.asarray(action, dtype=np.float64)
        if action.shape != (self.action_dim,) or not np.isfinite(action).all():
            raise ValueError(f"an ALOHA action must be 14 finite numbers (6 joint angles and a gripper opening per "
                             f"arm), got shape {action.shape}")
        self.steps += 1
        try:
            reward = self.scene.step(action)
        except UnstableSimulation as error:
            # Jumps an untrained policy commands can do this; the episode ends there, failed, not the evaluation.
            warnings.warn(f"ALOHA episode of seed {self.seed} ends at step {self.steps}: {error}", stacklevel=2)
            self.diverged = True
            return False, True
        self.stage = max(self.stage, reward)
        success = reward == SUCCESS_REWARD
        return success, success or self.steps >= self.max_steps

    def demonstrator(self, seed: int) -> Callable[[], np.ndarray]:
        """The scripted expert for this episode (the layout of the last `reset`; `seed` draws nothing more): its
        planned joint trajectory, one action per call, then its last action again."""
        from .aloha_expert import expert_trajectory

        if self.seed is None:
            raise RuntimeError("reset the environment before asking for its demonstrator")
        actions = iter(expert_trajectory(self.task, object_poses(self.task, self.seed)).astype(np.float32))
        last = [None]

        def next_action() -> np.ndarray:
            last[0] = next(actions, last[0])
            return last[0]

        return next_action

    def close(self) -> None:
        self.renderer.close()
