"""RoboTwin 2.0's policy interface for a GigaWorld-Policy checkpoint (RoboTwin's ALOHA-AgileX: 14-d joint
positions, three cameras). RoboTwin evaluates a policy through a `deploy_policy.py` with three functions; this
module is them, so that a policy folder's deploy_policy.py is one import:

    from gigaworld_policy.serving.robotwin import eval, get_model, reset_model  # noqa: A004 (RoboTwin's names)

`get_model(usr_args)` takes RoboTwin's `usr_args` (deploy_policy.yml and eval.sh's overrides):

    checkpoint     a checkpoint folder, run in the RoboTwin process        } one of the two
    server         host:port of a `gwp serve`, run anywhere                 }
    execute_steps  actions executed per chunk (default: half the chunk)
    cameras        RoboTwin camera -> the policy's camera name, e.g. {head_camera: top} (default: the same names)
    embodiment, temperature, steps   for `checkpoint`: which robot, the sampling temperature, the Euler steps

`eval(TASK_ENV, model, observation)` reads observation["observation"][camera]["rgb"] (H, W, 3) uint8 and
observation["joint_action"]["vector"] (14,), asks for a chunk with TASK_ENV.get_instruction(), and executes its first
`execute_steps` actions with TASK_ENV.take_action(action, action_type="qpos"); RoboTwin calls it again until the
episode ends. `reset_model(model)` is called between episodes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..envs.base import Observation

CAMERAS = ("head_camera", "left_camera", "right_camera")


@dataclass
class RoboTwinModel:
    """What `get_model` returns: a chunk source and how to read RoboTwin's observations for it."""

    chunk: Callable[[Observation], np.ndarray]  # observation -> (H, A) actions in robot units
    cameras: dict[str, str]  # RoboTwin camera -> the policy's camera
    execute_steps: int
    state_dim: int  # numbers in the policy's state (0: it reads none)
    chunks: int = 0  # chunks asked for this episode

    def reset(self) -> None:
        self.chunks = 0


def _argument(usr_args: dict, key: str, kind: type | tuple[type, ...], default: Any = None) -> Any:
    value = usr_args.get(key, default)
    if value is not None and (not isinstance(value, kind) or isinstance(value, bool)):
        names = " or ".join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))
        raise ValueError(f"usr_args[{key!r}] must be of type {names}, got {value!r}")
    return value


def get_model(usr_args: dict) -> RoboTwinModel:
    """The policy of `usr_args` (see the module docstring), ready for `eval`."""
    if not isinstance(usr_args, dict):
        raise ValueError(f"usr_args must be RoboTwin's dict of deploy_policy.yml settings, got {type(usr_args)}")
    checkpoint, server = _argument(usr_args, "checkpoint", str), _argument(usr_args, "server", str)
    if (checkpoint is None) == (server is None):
        raise ValueError("usr_args needs exactly one of 'checkpoint' (a checkpoint folder, run in this process) and "
                         f"'server' (host:port of a gwp serve); got keys {sorted(usr_args)}")
    asked = _argument(usr_args, "cameras", dict) or {}
    if checkpoint is not None:
        from ..inference import Predictor, load_checkpoint

        predictor = Predictor(load_checkpoint(checkpoint), _argument(usr_args, "embodiment", str),
                              num_steps=_argument(usr_args, "steps", int),
                              temperature=float(_argument(usr_args, "temperature", (int, float), 1.0)))
        chunk_size, state_dim, policy_cameras = (predictor.policy.config.chunk_size, predictor.state_dim,
                                                 predictor.cameras)

        def chunk(observation: Observation) -> np.ndarray:
            return predictor.predict(observation)["actions"]
    else:
        from .client import PolicyClient

        host, _, port = server.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"usr_args['server'] must be host:port, e.g. localhost:8000, got {server!r}")
        client = PolicyClient(host, int(port))
        chunk_size, state_dim = client.metadata["action_horizon"], client.metadata["state_dim"]
        policy_cameras = list(client.metadata["cameras"])

        def chunk(observation: Observation) -> np.ndarray:
            return client.infer(_request(observation))["actions"]
    cameras = camera_map(asked, list(policy_cameras))
    execute_steps = _argument(usr_args, "execute_steps", int, max(1, chunk_size // 2))
    if not 1 <= execute_steps <= chunk_size:
        raise ValueError(f"usr_args['execute_steps'] must lie in 1..{chunk_size} (the chunk), got {execute_steps}")
    return RoboTwinModel(chunk, cameras, execute_steps, state_dim)


def camera_map(asked: dict[str, str], policy_cameras: list[str]) -> dict[str, str]:
    """{RoboTwin camera: the policy camera it feeds}. RoboTwin's cameras keep their names unless `asked` maps them
    (a name that `asked` maps another camera onto is that camera's, not its namesake's); the policy reads the ones it
    was trained on, each from one RoboTwin camera."""
    unknown = sorted(set(asked) - set(CAMERAS))
    targets = list(asked.values())
    doubled = sorted({camera for camera in targets if targets.count(camera) > 1})
    if unknown or doubled:
        raise ValueError(f"usr_args['cameras'] maps RoboTwin's cameras {list(CAMERAS)}, each onto another policy "
                         f"camera; got {asked}")
    mapping = {camera: camera for camera in CAMERAS if camera not in targets} | asked
    cameras = {robotwin: camera for robotwin, camera in mapping.items() if camera in policy_cameras}
    missing = [camera for camera in policy_cameras if camera not in cameras.values()]
    if missing:
        raise ValueError(f"the policy reads cameras {policy_cameras}; map RoboTwin's {list(CAMERAS)} onto "
                         f"{missing} with usr_args['cameras'], e.g. {{'head_camera': {missing[0]!r}}}")
    return cameras


def _request(observation: Observation) -> dict:
    """The policy server's request of an observation (openpi's keys, as `PolicyClient` sends them)."""
    request = {f"observation.images.{camera}": image for camera, image in observation.images.items()}
    if observation.state is not None:
        request["observation.state"] = observation.state
    return request | {"task": observation.task}


def read_observation(observation: dict, instruction: str, model: RoboTwinModel) -> Observation:
    """The policy's `Observation` of one RoboTwin observation dictionary; anything missing or malformed is a
    sentence naming the key."""
    views = observation.get("observation") if isinstance(observation, dict) else None
    if not isinstance(views, dict):
        raise ValueError("a RoboTwin observation must be a dict with an 'observation' dict of cameras")
    images = {}
    for robotwin_camera, camera in model.cameras.items():
        view = views.get(robotwin_camera)
        image = view.get("rgb") if isinstance(view, dict) else None
        if image is None:
            raise ValueError(f"observation['observation'][{robotwin_camera!r}]['rgb'] is missing (cameras there: "
                             f"{sorted(views)})")
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"observation['observation'][{robotwin_camera!r}]['rgb'] must be (H, W, 3) uint8, got "
                             f"{image.shape} {image.dtype}")
        images[camera] = image
    state = None
    if model.state_dim:
        joints = observation.get("joint_action")
        vector = joints.get("vector") if isinstance(joints, dict) else None
        state = None if vector is None else np.asarray(vector, dtype=np.float32)
        if state is None or state.shape != (model.state_dim,) or not np.isfinite(state).all():
            raise ValueError(f"observation['joint_action']['vector'] must be {model.state_dim} finite numbers (the "
                             f"policy's state), got {None if state is None else state.shape}")
    return Observation(images, state, instruction)


def eval(TASK_ENV, model: RoboTwinModel, observation: dict) -> None:  # noqa: A001, N803 (RoboTwin's names)
    """One chunk: read `observation`, predict, execute the chunk's first `execute_steps` actions as joint
    positions. Stops early when the task reports success."""
    chunk = model.chunk(read_observation(observation, TASK_ENV.get_instruction(), model))
    model.chunks += 1
    for action in np.asarray(chunk)[:model.execute_steps]:
        TASK_ENV.take_action(action, action_type="qpos")
        if getattr(TASK_ENV, "eval_success", False):
            break


def reset_model(model: RoboTwinModel) -> None:
    model.reset()
