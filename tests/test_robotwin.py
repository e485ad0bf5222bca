"""RoboTwin 2.0's deploy_policy interface, driven by a stand-in task environment that hands over exactly RoboTwin's
observation dictionaries and takes actions as RoboTwin's does."""

import numpy as np
import pytest
from helpers import write_robot

from gigaworld_policy.envs.base import Observation
from gigaworld_policy.inference import Predictor
from gigaworld_policy.serving.robotwin import CAMERAS, camera_map, eval, get_model, reset_model
from gigaworld_policy.serving.server import PolicyServer, serve_in_background
from gigaworld_policy.train import TrainConfig, train

SIZE = (24, 32)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    root = tmp_path_factory.mktemp("robotwin")
    data = write_robot(root / "data", "aloha-agilex", CAMERAS, SIZE, 14, fps=25, episodes=2)
    return str(train(TrainConfig(dataset=(data,), preset="tiny", steps=2, output_dir=str(root / "run"),
                                 batch_size=2, num_workers=0, log_with="none")).checkpoint)


class StandInTaskEnv:
    """What RoboTwin's evaluation hands a policy: get_obs(), get_instruction(), take_action(action, action_type),
    eval_success, and a step limit."""

    def __init__(self, step_limit=20, succeed_at=None):
        self.rng = np.random.default_rng(0)
        self.qpos = self.rng.normal(size=14)
        self.taken, self.step_lim, self.succeed_at, self.eval_success = [], step_limit, succeed_at, False

    def get_instruction(self):
        return "hand the block over to the other arm"

    def get_obs(self):
        cameras = {camera: {"rgb": self.rng.integers(0, 255, (*SIZE, 3), dtype=np.uint8),
                            "intrinsic_cv": np.eye(3), "extrinsic_cv": np.eye(4)[:3], "cam2world_gl": np.eye(4)}
                   for camera in CAMERAS}
        return {"observation": cameras, "pointcloud": [],
                "joint_action": {"left_arm": list(self.qpos[:6]), "left_gripper": self.qpos[6],
                                 "right_arm": list(self.qpos[7:13]), "right_gripper": self.qpos[13],
                                 "vector": self.qpos.copy()},
                "endpose": {"left_endpose": np.zeros(7), "right_endpose": np.zeros(7)}}

    def take_action(self, action, action_type="qpos"):
        assert action_type == "qpos" and np.shape(action) == (14,)
        self.taken.append(np.array(action))
        self.qpos = np.array(action, dtype=float)
        self.eval_success = self.succeed_at is not None and len(self.taken) >= self.succeed_at


def robotwin_episode(env, model):
    """RoboTwin's loop: eval(...) with a fresh observation until the step limit or success."""
    while len(env.taken) < env.step_lim and not env.eval_success:
        eval(env, model, env.get_obs())
    reset_model(model)


def test_a_checkpoint_runs_in_robotwins_loop_with_robotwins_observations(checkpoint):
    model = get_model({"checkpoint": checkpoint, "execute_steps": 3, "temperature": 0, "task_name": "handover_block",
                       "ckpt_setting": "demo_clean", "seed": 0})
    env = StandInTaskEnv(step_limit=7)
    first = env.get_obs()
    env.rng = np.random.default_rng(0)  # the episode starts from the same observation as `first`
    env.rng.normal(size=14)
    robotwin_episode(env, model)
    assert len(env.taken) == 9 and model.chunks == 0  # 3 chunks of 3 actions (the last one crossed the limit); reset
    # the first chunk is the policy's own for that observation: cameras, state and instruction arrive as they should
    predictor = Predictor.from_checkpoint(checkpoint, temperature=0)
    expected = predictor.predict(Observation({c: first["observation"][c]["rgb"] for c in CAMERAS},
                                             first["joint_action"]["vector"].astype(np.float32),
                                             "hand the block over to the other arm"))["actions"]
    np.testing.assert_allclose(np.stack(env.taken[:3]), expected[:3], rtol=1e-5, atol=1e-5)


def test_success_stops_the_chunk_and_a_server_gives_the_same_actions(checkpoint):
    local = get_model({"checkpoint": checkpoint, "execute_steps": 4, "temperature": 0})
    with serve_in_background(PolicyServer(Predictor.from_checkpoint(checkpoint, temperature=0), "127.0.0.1", 0)) \
            as server:
        remote = get_model({"server": f"127.0.0.1:{server.port}", "execute_steps": 4})
        envs = [StandInTaskEnv(succeed_at=6), StandInTaskEnv(succeed_at=6)]
        robotwin_episode(envs[0], local)
        robotwin_episode(envs[1], remote)
    assert len(envs[0].taken) == 6  # 4, then 2 of the next chunk: success ends the chunk early
    np.testing.assert_allclose(np.stack(envs[0].taken), np.stack(envs[1].taken), rtol=1e-5, atol=1e-5)


def test_bad_arguments_and_observations_are_a_sentence(checkpoint):
    with pytest.raises(ValueError, match="exactly one of 'checkpoint'"):
        get_model({"checkpoint": checkpoint, "server": "localhost:8000"})
    with pytest.raises(ValueError, match="exactly one of 'checkpoint'"):
        get_model({"task_name": "handover_block"})
    with pytest.raises(ValueError, match=r"execute_steps'\] must lie in 1\.\.8 \(the chunk\), got 9"):
        get_model({"checkpoint": checkpoint, "execute_steps": 9})
    with pytest.raises(ValueError, match=r"map RoboTwin's \['head_camera', 'left_camera', 'right_camera'\] onto "
                                         r"\['head_camera'\]"):
        get_model({"checkpoint": checkpoint, "cameras": {"head_camera": "front_camera"}})
    for key, value, expected in (("temperature", "1e-1", "int or float"), ("execute_steps", True, "int")):
        with pytest.raises(ValueError, match=f"usr_args\\['{key}'\\] must be of type {expected}, got {value!r}"):
            get_model({"checkpoint": checkpoint, key: value})
    model = get_model({"checkpoint": checkpoint})
    env = StandInTaskEnv()
    observation = env.get_obs()
    del observation["observation"]["left_camera"]
    with pytest.raises(ValueError, match=r"observation\['observation'\]\['left_camera'\]\['rgb'\] is missing"):
        eval(env, model, observation)
    observation = env.get_obs()
    observation["joint_action"]["vector"] = np.zeros(7)
    with pytest.raises(ValueError, match=r"joint_action'\]\['vector'\] must be 14 finite numbers"):
        eval(env, model, observation)
    assert env.taken == []


def test_a_camera_mapped_onto_a_robotwin_name_replaces_that_camera_and_two_onto_one_are_refused():
    # a policy that reads one camera named like RoboTwin's left one, fed from RoboTwin's head camera
    assert camera_map({"head_camera": "left_camera"}, ["left_camera"]) == {"head_camera": "left_camera"}
    swapped = camera_map({"head_camera": "left_camera", "left_camera": "head_camera"}, list(CAMERAS))
    assert swapped == {"head_camera": "left_camera", "left_camera": "head_camera", "right_camera": "right_camera"}
    assert camera_map({}, ["right_camera"]) == {"right_camera": "right_camera"}
    for asked in ({"head_camera": "top", "right_camera": "top"}, {"front_camera": "top"}):
        with pytest.raises(ValueError, match="each onto another policy camera"):
            camera_map(asked, ["top"])
