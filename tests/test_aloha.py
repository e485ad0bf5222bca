"""Bimanual ALOHA in simulation: settings, the environment's rules, the scripted experts and their recordings."""

from types import SimpleNamespace

import numpy as np
import pytest

from gigaworld_policy.data.lerobot import LeRobotDataset
from gigaworld_policy.envs.aloha import JOINT_NAMES, OBJECT_NAMES, AlohaEnv, AlohaSettings, check_tasks, object_poses
from gigaworld_policy.envs.aloha_expert import expert_trajectory
from gigaworld_policy.envs.base import episode_seed
from gigaworld_policy.envs.recording import collect, read_recording
from gigaworld_policy.envs.registry import make_env, settings_from_dict, settings_to_dict
from gigaworld_policy.evaluate import closed_loop, report_markdown

pytest.importorskip("gym_aloha")


@pytest.mark.parametrize(("changes", "expected"), [
    ({"cameras": ("top", "wrist")}, r"unknown camera 'wrist'.*ALOHA has \['top', 'angle'"),
    ({"cameras": ()}, "no camera given"),
    ({"image_size": (48,)}, "image_size must be two positive whole numbers"),
    ({"fps": 10}, "fps must be 50, the rate the ALOHA simulation runs at, got 10"),
])
def test_bad_settings_are_a_sentence(changes, expected):
    with pytest.raises(ValueError, match=expected):
        AlohaSettings(**changes)


def test_settings_round_trip_and_name_lerobots_joint_order():
    settings = AlohaSettings(cameras=("top", "left_wrist"), image_size=(48, 64))
    assert settings_from_dict("aloha", settings_to_dict(settings)) == settings
    assert settings.state_names == settings.action_names == JOINT_NAMES
    assert JOINT_NAMES[:7] == ("left_waist", "left_shoulder", "left_elbow", "left_forearm_roll", "left_wrist_angle",
                               "left_wrist_rotate", "left_gripper") and len(JOINT_NAMES) == 14


def test_unknown_tasks_are_named_together():
    with pytest.raises(ValueError, match=r"unknown ALOHA tasks 'transfer_cube' \(did you mean 'transfer-cube'\?\), "
                                         r"'peg'; ALOHA has \['transfer-cube', 'insertion'\]"):
        check_tasks(["transfer_cube", "peg", "insertion"])


def test_observations_are_the_asked_cameras_and_the_same_seed_is_the_same_episode():
    env = make_env(AlohaSettings(cameras=("top", "right_wrist"), image_size=(24, 32)), "transfer-cube", 400)
    first = env.reset(3)
    assert sorted(first.images) == ["right_wrist", "top"]
    assert all(image.shape == (24, 32, 3) and image.dtype == np.uint8 for image in first.images.values())
    assert first.state.shape == (14,) and "cube" in first.task
    again = env.reset(3)
    np.testing.assert_array_equal(first.images["top"], again.images["top"])
    other = env.reset(4)
    assert not np.array_equal(first.images["top"], other.images["top"])  # the cube moved
    with pytest.raises(ValueError, match="an ALOHA action must be 14 finite numbers"):
        env.step(np.zeros(4))
    with pytest.raises(ValueError, match="an ALOHA action must be 14 finite numbers"):
        env.step(np.full(14, np.nan))
    env.close()


def test_holding_the_last_action_keeps_the_arms_still():
    env = AlohaEnv("transfer-cube", AlohaSettings(image_size=(24, 32)), 400)
    start = env.reset(0).state
    for _ in range(25):  # let the arms settle at the start pose
        env.step(env.hold_action(start))
    settled = env.observe().state
    for _ in range(25):
        env.step(env.hold_action(start))
    np.testing.assert_allclose(env.observe().state, settled, atol=2e-3)
    env.close()


def test_observed_objects_are_where_the_simulation_has_them_now():
    settings = AlohaSettings(image_size=(24, 32), observe_objects=True)
    assert settings.state_names == JOINT_NAMES + OBJECT_NAMES
    env = AlohaEnv("insertion", settings, 400)
    state = env.reset(1).state
    peg, socket = object_poses("insertion", 1)[:3], object_poses("insertion", 1)[7:10]
    assert state.shape == (20,)
    np.testing.assert_allclose(state[14:], np.concatenate([peg, socket]), atol=1e-6)
    env.close()
    env = AlohaEnv("transfer-cube", settings, 400)
    start = env.reset(0).state
    np.testing.assert_allclose(start[14:17], object_poses("transfer-cube", 0)[:3], atol=1e-6)
    assert not start[17:].any()  # one object: the second slot is zeros
    expert = env.demonstrator(0)
    for _ in range(250):  # the right arm has lifted the cube by now
        env.step(expert())
    lifted = env.observe().state
    np.testing.assert_array_equal(lifted[:14], env.scene.state().astype(np.float32))
    assert lifted[16] > start[16] + 0.1  # the cube's height follows the simulation, not the reset layout
    env.close()


@pytest.mark.parametrize(("task", "seed"), [("transfer-cube", 0), ("insertion", 2)])
def test_the_scripted_expert_succeeds_on_the_joint_position_replay(task, seed):
    env = AlohaEnv(task, AlohaSettings(image_size=(24, 32)), 400)
    env.reset(seed)
    expert, success, done = env.demonstrator(seed), False, False
    while not done:
        success, done = env.step(expert())
    assert success and env.steps < 400  # the package's reward reached 4 before the time limit
    env.close()


def test_collect_writes_lerobots_aloha_features_and_evaluation_rebuilds_the_env(tmp_path):
    settings = AlohaSettings(image_size=(24, 32))
    report = collect(settings, ["transfer-cube"], 1, tmp_path / "aloha", max_steps=400, progress=False)
    assert report["transfer-cube"]["episodes"] == 1
    dataset = LeRobotDataset(tmp_path / "aloha")
    features = dataset.info["features"]
    assert dataset.info["fps"] == 50 and dataset.info["robot_type"] == "aloha"
    assert features["observation.images.top"]["shape"] == [24, 32, 3]
    assert features["observation.state"]["shape"] == [14] and features["action"]["shape"] == [14]
    assert features["action"]["names"] == list(JOINT_NAMES)
    recording = read_recording(tmp_path / "aloha")
    assert recording.env == "aloha" and recording.settings == settings and recording.tasks == ("transfer-cube",)
    # the recorded actions replayed from the same layout succeed again: the episode is the expert's own
    env = make_env(recording.settings, "transfer-cube", 400)
    env.reset(0)
    actions = dataset.columns["action"]
    outcomes = [env.step(action) for action in actions]
    assert outcomes[-1] == (True, True) and not any(success for success, _ in outcomes[:-1])
    env.close()


class ExpertReplay:
    """A stand-in policy for one episode: the scripted expert's trajectory for `layout`, 24 actions a plan, or with no
    layout the arms held where they are."""

    cameras, camera_sizes, state_dim = ["top"], [(24, 32)], 14
    policy = SimpleNamespace(config=SimpleNamespace(future_stride=24))

    def __init__(self, task: str, layout: np.ndarray | None):
        self.trajectory = None if layout is None else expert_trajectory(task, layout).astype(np.float32)
        self.plans = 0

    def predict(self, observation, **_):
        if self.trajectory is None:
            return {"actions": np.repeat(observation.state[None], 24, axis=0)}
        start = min(24 * self.plans, len(self.trajectory) - 24)
        self.plans += 1
        return {"actions": self.trajectory[start:start + 24]}


@pytest.mark.parametrize("still", [False, True])
def test_evaluation_reports_the_stages_the_episodes_reached(still):
    layout = object_poses("transfer-cube", episode_seed(1000, 0, 0))  # of closed_loop's first episode
    replay = ExpertReplay("transfer-cube", None if still else layout)
    env = AlohaEnv("transfer-cube", AlohaSettings(image_size=(24, 32)), 400)
    report = closed_loop(replay, lambda task: env, ["transfer-cube"], episodes=1, execute_steps=24, progress=False)
    row = report["tasks"]["transfer-cube"]
    assert list(row["stages"]) == ["touched", "lifted", "transfer attempted", "transferred"]
    assert row["stages"] == dict.fromkeys(row["stages"], 0.0 if still else 1.0)
    assert report["results"][0]["stage"] == (0 if still else 4) and row["success_rate"] == (0.0 if still else 1.0)
    assert "diverged" not in row and "diverged" not in report["results"][0]  # said only where it happened
    assert ("touched 0%" if still else "transferred 100%") in report_markdown(report)


def test_a_motion_that_makes_the_physics_diverge_ends_that_episode_not_the_evaluation():
    env = AlohaEnv("transfer-cube", AlohaSettings(image_size=(24, 32)), 400)
    env.reset(1)
    rng = np.random.default_rng(1)
    limits = 2 * np.array([3.14, 1.8, 1.7, 3.14, 2.0, 3.14, 3.0] * 2)  # beyond the joints' ranges, as bad policies do
    with pytest.warns(UserWarning, match=r"ALOHA episode of seed 1 ends at step \d+: the transfer-cube simulation "
                                         r"diverged"):
        for _ in range(50):
            outcome = env.step(np.where(rng.random(14) < 0.5, -1.0, 1.0) * limits)
            if outcome[1]:
                break
    assert outcome == (False, True) and env.steps < 50
    assert np.isfinite(env.observe().state).all()  # put back as it was before the step that diverged
    start = env.reset(0).state
    for _ in range(10):
        assert env.step(env.hold_action(start)) == (False, False)
    env.close()


class Jumps:
    """A stand-in policy that commands joint jumps beyond the joints' ranges, as an untrained policy can."""

    cameras, camera_sizes, state_dim = ["top"], [(24, 32)], 14
    policy = SimpleNamespace(config=SimpleNamespace(future_stride=24))
    limits = 2 * np.array([3.14, 1.8, 1.7, 3.14, 2.0, 3.14, 3.0] * 2)

    def __init__(self):
        self.rng = np.random.default_rng(0)

    def predict(self, observation, **_):
        return {"actions": np.where(self.rng.random((24, 14)) < 0.5, -1.0, 1.0) * self.limits}


def test_evaluation_counts_the_episodes_the_simulation_diverged_in():
    env = AlohaEnv("transfer-cube", AlohaSettings(image_size=(24, 32)), 400)
    with pytest.warns(UserWarning, match="ALOHA episode of seed"):
        report = closed_loop(Jumps(), lambda task: env, ["transfer-cube"], episodes=2, execute_steps=24,
                             progress=False)
    assert report["tasks"]["transfer-cube"]["diverged"] == 2 and report["tasks"]["transfer-cube"]["successes"] == 0
    assert all(row["diverged"] and row["length"] < 400 for row in report["results"])
    assert "diverged under the commanded motion: transfer-cube 2/2." in report_markdown(report)
