"""Scripted ALOHA experts, as ACT recorded its scripted demonstrations: plan waypoints for the two grippers in the
end-effector (mocap) variant of a scene, simulate it, and hand back the joint trajectory that the arms followed, to be
replayed in the joint-position scene with the same object layout (envs/aloha.py judges success on that replay).

Under MuJoCo 3 the package's end-effector scenes weld each mocap body to its gripper 13.5 cm off (the weld's
relative pose is read as an offset) and softly (solimp 0.25), so a gripper trails its target by centimetres.
`end_effector_physics` zeroes the offset and stiffens the weld; targets are for the midpoint between the fingers,
not the gripper link, which sits 12 cm behind them. The left gripper finds the cube where the right one holds it,
and the peg is aimed at the socket's mouth from where both really are (`Waypoint.near`). The joint-position arms sag
and lag a few millimetres behind the welded ones, more than the insertion's play, so an insertion is checked on the
replay and planned again with its aim corrected (`expert_trajectory`).

    joints = expert_trajectory("insertion", object_poses("insertion", seed))   # (400, 14) joint-position actions
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

STEPS = 400  # control steps (50 Hz) of a scripted episode: ACT's episode length
SUBSTEPS = 10  # physics steps per control step (0.02 s / 0.002 s)
OPEN, CLOSED = 1.0, 0.0  # normalised gripper commands
# Where the fingers' midpoint lies in a gripper link's frame (measured on the package's model, fingers closed).
FINGER_MIDPOINT = np.array([0.125, 0.0, 0.0])
WELD_SOLIMP = (0.95, 0.99, 0.001)  # stiff enough to track a target within millimetres
START_GRIPPERS = {"left": np.array([-0.31718881, 0.5, 0.29525084]), "right": np.array([0.31718881, 0.5, 0.29525084])}


def _quat(axis: tuple[float, float, float], degrees: float) -> np.ndarray:
    """(4,) unit quaternion (w, x, y, z) of a rotation by `degrees` about `axis` (world frame)."""
    half = np.radians(degrees) / 2
    return np.concatenate([[np.cos(half)], np.sin(half) * np.asarray(axis, dtype=float)])


def _multiply(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hamilton product a·b of (4,) quaternions: rotate by b, then by a."""
    w1, x1, y1, z1 = a
    w2, x2, y2, z2 = b
    return np.array([w1 * w2 - x1 * x2 - y1 * y2 - z1 * z2, w1 * x2 + x1 * w2 + y1 * z2 - z1 * y2,
                     w1 * y2 - x1 * z2 + y1 * w2 + z1 * x2, w1 * z2 + x1 * y2 - y1 * x2 + z1 * w2])


def _rotation(quaternion: np.ndarray) -> np.ndarray:
    """(3, 3) rotation matrix of a (4,) unit quaternion."""
    w, x, y, z = quaternion / np.linalg.norm(quaternion)
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
                     [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
                     [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)]])


IDENTITY = np.array([1.0, 0.0, 0.0, 0.0])
# The right gripper's frame is its mocap body's turned half a turn about z (the arm faces the other way).
RIGHT_OFFSET = _quat((0, 0, 1), 180)


@dataclass(frozen=True)
class Waypoint:
    """Where one gripper should be at control step `step`: its fingers' midpoint `xyz` (3,), its mocap body's
    orientation `quat` (4,, w x y z; identity = the start pose) and its opening (`OPEN` .. `CLOSED`). With `near`
    (a body's name), `xyz` is an offset from where that body is when the gripper sets off towards the waypoint: how
    the left gripper finds the cube in the right one's fingers. With `holding` too (the body in this gripper), the
    offset is for that body rather than for the fingers: how the right gripper aims the peg at the socket. Both mean
    the body's origin, or the points `near_point` and `holding_point` (in the bodies' own frames: the socket's mouth,
    the peg's tip), wherever the bodies have turned."""

    step: int
    xyz: tuple[float, float, float]
    quat: tuple[float, float, float, float]
    grip: float
    near: str | None = None
    holding: str | None = None
    near_point: tuple[float, float, float] = (0.0, 0.0, 0.0)
    holding_point: tuple[float, float, float] = (0.0, 0.0, 0.0)


def _interpolate(waypoints: list[Waypoint], step: int) -> tuple[np.ndarray, np.ndarray, float]:
    """The target (xyz (3,), quat (4,), grip) at `step`: linear between the waypoints around it (normalised
    quaternions), the last one after the end."""
    if step >= waypoints[-1].step:
        last = waypoints[-1]
        return np.array(last.xyz), np.array(last.quat), last.grip
    after = next(i for i, w in enumerate(waypoints) if w.step > step)
    a, b = waypoints[after - 1], waypoints[after]
    f = (step - a.step) / (b.step - a.step)
    quat = (1 - f) * np.array(a.quat) + f * np.array(b.quat)
    return ((1 - f) * np.array(a.xyz) + f * np.array(b.xyz), quat / np.linalg.norm(quat),
            (1 - f) * a.grip + f * b.grip)


def _gripper_target(midpoint: np.ndarray, mocap_quat: np.ndarray, arm: str) -> np.ndarray:
    """(3,) where the mocap body must be for the fingers' midpoint to be at `midpoint`."""
    frame = _multiply(mocap_quat, RIGHT_OFFSET) if arm == "right" else mocap_quat
    return midpoint - _rotation(frame) @ FINGER_MIDPOINT


def _tuple(vector) -> tuple:
    return tuple(float(v) for v in vector)


def transfer_cube_waypoints(cube: np.ndarray) -> dict[str, list[Waypoint]]:
    """The right gripper picks the cube at `cube` (xyz), lifts it to the middle; the left takes it from there.
    Returns {"left": [...], "right": [...]}."""
    meet = np.array([0.0, 0.5, 0.25])
    pick = _tuple(_quat((0, 1, 0), -60))  # the right fingers point down at 60 degrees, towards -x
    take = _tuple(_multiply(_quat((1, 0, 0), 90), IDENTITY))  # the left fingers horizontal, closing vertically
    left_start = _tuple(START_GRIPPERS["left"] + _rotation(IDENTITY) @ FINGER_MIDPOINT)
    right_start = _tuple(START_GRIPPERS["right"] + _rotation(RIGHT_OFFSET) @ FINGER_MIDPOINT)
    above, at = _tuple(cube + [0, 0, 0.08]), _tuple(cube + [0, 0, -0.005])
    right = [Waypoint(0, right_start, _tuple(IDENTITY), CLOSED),
             Waypoint(90, above, pick, OPEN),
             Waypoint(130, at, pick, OPEN),
             Waypoint(170, at, pick, CLOSED),
             Waypoint(220, _tuple(meet), pick, CLOSED),
             Waypoint(310, _tuple(meet), pick, CLOSED),
             Waypoint(330, _tuple(meet), pick, OPEN),
             Waypoint(400, _tuple(meet + [0.1, 0, 0.05]), pick, OPEN)]
    left = [Waypoint(0, left_start, _tuple(IDENTITY), CLOSED),
            Waypoint(90, _tuple(meet + [-0.2, 0, 0]), take, OPEN),
            Waypoint(220, _tuple(meet + [-0.1, 0, 0]), take, OPEN),
            Waypoint(270, (-0.01, 0, 0), take, OPEN, near="box"),
            Waypoint(300, (-0.01, 0, 0), take, CLOSED, near="box"),
            Waypoint(400, _tuple(meet + [-0.08, 0, 0.02]), take, CLOSED)]
    return {"left": left, "right": right}


GRASP = 0.02  # each part is held this far out from its centre: near it, so that it hangs level
# The peg's tip and the socket's mouth, 6 cm from their centres along x: how the right gripper aims one at the other.
AIM = {"near": "socket", "near_point": (0.06, 0, 0), "holding": "peg", "holding_point": (-0.06, 0, 0)}


def insertion_waypoints(peg: np.ndarray, socket: np.ndarray) -> dict[str, list[Waypoint]]:
    """The left gripper picks the socket, the right the peg (each near its outer end; `peg`, `socket`: where they
    were placed, xyz); both lift them to the middle and the right pushes the peg into the socket until it touches the
    pin inside. Returns {"left": [...], "right": [...]}."""
    meet = np.array([0.0, 0.5, 0.2])
    left_pick = _tuple(_quat((0, 1, 0), 60))
    right_pick = _tuple(_quat((0, 1, 0), -60))
    left_start = _tuple(START_GRIPPERS["left"] + _rotation(IDENTITY) @ FINGER_MIDPOINT)
    right_start = _tuple(START_GRIPPERS["right"] + _rotation(RIGHT_OFFSET) @ FINGER_MIDPOINT)
    left = [Waypoint(0, left_start, _tuple(IDENTITY), CLOSED),
            Waypoint(90, _tuple(socket + [-GRASP, 0, 0.08]), left_pick, OPEN),
            Waypoint(130, (-GRASP, 0, 0), left_pick, OPEN, near="socket"),
            Waypoint(170, (-GRASP, 0, 0), left_pick, CLOSED, near="socket"),
            Waypoint(220, (-GRASP, 0, 0.1), left_pick, CLOSED, near="socket"),
            Waypoint(290, _tuple(meet + [-0.1, 0, 0]), left_pick, CLOSED),
            Waypoint(400, _tuple(meet + [-0.1, 0, 0]), left_pick, CLOSED)]
    right = [Waypoint(0, right_start, _tuple(IDENTITY), CLOSED),
             Waypoint(90, _tuple(peg + [GRASP, 0, 0.08]), right_pick, OPEN),
             Waypoint(130, (GRASP, 0, 0), right_pick, OPEN, near="peg"),
             Waypoint(170, (GRASP, 0, 0), right_pick, CLOSED, near="peg"),
             Waypoint(220, (GRASP, 0, 0.1), right_pick, CLOSED, near="peg"),
             Waypoint(290, _tuple(meet + [0.2, 0, 0]), right_pick, CLOSED),
             # the peg's tip 5 cm outside the socket's mouth, in line, aimed again once the two have come to rest
             Waypoint(320, (0.03, 0, 0), right_pick, CLOSED, **AIM),
             Waypoint(335, (0.03, 0, 0), right_pick, CLOSED, **AIM),
             # then slowly 5 cm inside it (the pin begins 2 cm in)
             Waypoint(395, (-0.05, 0, 0), right_pick, CLOSED, **AIM),
             Waypoint(400, (-0.05, 0, 0), right_pick, CLOSED, **AIM)]
    return {"left": left, "right": right}


WAYPOINTS = {"transfer-cube": transfer_cube_waypoints, "insertion": insertion_waypoints}
END_EFFECTOR_SCENES = {"transfer-cube": "bimanual_viperx_end_effector_transfer_cube.xml",
                       "insertion": "bimanual_viperx_end_effector_insertion.xml"}


def _fingers(physics, arm: str) -> np.ndarray:
    """(3,) where the fingers' midpoint of `arm` is now."""
    link = f"vx300s_{arm}/gripper_link"
    return physics.named.data.xpos[link] + physics.named.data.xmat[link].reshape(3, 3) @ FINGER_MIDPOINT


def _resolve(waypoints: list[Waypoint], step: int, physics, arm: str) -> list[Waypoint]:
    """`waypoints` with the one `arm` sets off towards at `step`, if it is `near` a body, made absolute."""
    def point(body: str, local: tuple[float, float, float]) -> np.ndarray:
        data = physics.named.data
        return data.xpos[body] + data.xmat[body].reshape(3, 3) @ np.asarray(local)

    def absolute(w: Waypoint) -> Waypoint:
        xyz = point(w.near, w.near_point) + w.xyz
        if w.holding is not None:
            xyz = xyz + _fingers(physics, arm) - point(w.holding, w.holding_point)
        return replace(w, xyz=_tuple(xyz), near=None, holding=None)

    return [absolute(w) if w.near is not None and i > 0 and waypoints[i - 1].step == step else w
            for i, w in enumerate(waypoints)]


def end_effector_physics(task: str):
    """The package's end-effector (mocap) scene of `task` as a dm_control `Physics`, welds fixed (module doc)."""
    from dm_control import mujoco
    from gym_aloha.constants import ASSETS_DIR

    physics = mujoco.Physics.from_xml_path(str(ASSETS_DIR / END_EFFECTOR_SCENES[task]))
    model = physics.model
    model.eq_data[:, 3:6] = 0  # a weld's data: anchor (3), relative position (3), relative quaternion (4), ...
    model.eq_solimp[:, :3] = WELD_SOLIMP
    return physics


def plan_joint_trajectory(task: str, object_qpos: np.ndarray, aim_correction: np.ndarray | None = None,
                          steps: int = STEPS) -> np.ndarray:
    """(steps, 14) joint-position actions of the scripted expert for `task` with the objects' free-joint poses
    `object_qpos` ((7,) cube, or (14,) peg then socket: xyz + quaternion each), planned in the end-effector scene:
    per step the arms' joint angles the welded grippers reached and the commanded gripper openings.
    `aim_correction` (3,) moves the waypoints that aim a held body (see `Waypoint.holding`)."""
    from gym_aloha.constants import START_ARM_POSE, unnormalize_puppet_gripper_position

    physics = end_effector_physics(task)
    with physics.reset_context():
        physics.data.qpos[:16] = START_ARM_POSE
        physics.data.qpos[16:16 + len(object_qpos)] = object_qpos
        physics.data.mocap_pos[:] = [START_GRIPPERS["left"], START_GRIPPERS["right"]]
        physics.data.mocap_quat[:] = IDENTITY
    positions = [object_qpos[7 * i:7 * i + 3] for i in range(len(object_qpos) // 7)]
    plan = WAYPOINTS[task](*positions)
    if aim_correction is not None:
        plan = {arm: [replace(w, xyz=_tuple(np.add(w.xyz, aim_correction))) if w.holding else w for w in waypoints]
                for arm, waypoints in plan.items()}
    actions = np.empty((steps, 14))
    for step in range(steps):
        grips = []
        for index, arm in enumerate(("left", "right")):
            plan[arm] = _resolve(plan[arm], step, physics, arm)
            xyz, quat, grip = _interpolate(plan[arm], step)
            physics.data.mocap_pos[index] = _gripper_target(xyz, quat, arm)
            physics.data.mocap_quat[index] = quat
            grips.append(grip)
        finger = [unnormalize_puppet_gripper_position(g) for g in grips]
        physics.data.ctrl[:] = [finger[0], -finger[0], finger[1], -finger[1]]
        physics.step(SUBSTEPS)
        qpos = physics.data.qpos
        actions[step] = np.concatenate([qpos[0:6], [grips[0]], qpos[8:14], [grips[1]]])
    return actions


def _misalignment(physics) -> tuple[float, np.ndarray]:
    """How far the peg's tip still is from the socket's mouth along the insertion axis (metres, > 0 outside), and
    (3,) how far the mouth is from the tip across it (its x part is 0)."""
    data = physics.named.data
    mouth = data.xpos["socket"] + data.xmat["socket"].reshape(3, 3) @ np.array(AIM["near_point"])
    tip = data.xpos["peg"] + data.xmat["peg"].reshape(3, 3) @ np.array(AIM["holding_point"])
    return tip[0] - mouth[0], (mouth - tip) * [0, 1, 1]


def expert_trajectory(task: str, object_qpos: np.ndarray, tries: int = 4) -> np.ndarray:
    """(STEPS, 14) the scripted expert's joint-position actions for `task` with objects at `object_qpos`: planned in
    the end-effector scene and replayed in the joint scene. The joint arms sag and lag a few millimetres behind the
    welded ones, more than the insertion's 8 mm of play, so an insertion that fails on replay is planned again with
    its aim moved by the misalignment measured on the replay as the peg's tip reached the socket's mouth, up to
    `tries` plans; the last plan is returned."""
    from .aloha import SUCCESS_REWARD, Scene

    scene, correction = Scene(task), np.zeros(3)
    for _ in range(tries):
        actions = plan_joint_trajectory(task, object_qpos, correction)
        if task != "insertion":
            return actions
        scene.reset(object_qpos)
        succeeded, error = False, np.zeros(3)
        for action in actions:
            succeeded |= scene.step(action) == SUCCESS_REWARD
            outside, across = _misalignment(scene.physics)
            if outside > 0.005:
                error = across  # the last one before the tip enters
        if succeeded:
            return actions
        correction = correction + error
    return actions
