"""A tiny Meta-World collection produces a dataset that plain pyarrow + PyAV read consistently."""

import json
import os
import signal
import subprocess
import sys
import time

import av
import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from safetensors.torch import load_file

from gigaworld_policy.data import LeRobotDatasetWriter


def _rendering_available() -> bool:
    try:
        from gigaworld_policy.envs.metaworld import MetaWorldEnv, MetaWorldSettings

        MetaWorldEnv("reach-v3", MetaWorldSettings(cameras=("corner",), image_size=(8, 8))).close()
        return True
    except Exception:
        return False


# CI sets GWP_REQUIRE_RENDERING=1 (it installs the OpenGL libraries), so there a broken renderer fails.
pytestmark = pytest.mark.skipif(
    os.environ.get("GWP_REQUIRE_RENDERING") != "1" and not _rendering_available(),
    reason="offscreen OpenGL (EGL) is not available: apt-get install libegl1 libgl1-mesa-dri",
)


def settings(**changes):
    from gigaworld_policy.envs.metaworld import MetaWorldSettings

    return MetaWorldSettings(**{"cameras": ("corner",), "image_size": (16, 16), **changes})


def test_collect_writes_a_readable_dataset(tmp_path):
    from gigaworld_policy.envs.recording import collect

    report = collect(settings(cameras=("corner", "gripperPOV"), image_size=(32, 40)), ["reach-v3"], episodes=1,
                     out=tmp_path / "mw", seed=3, progress=False)
    assert report["reach-v3"]["episodes"] == 1
    root = tmp_path / "mw"
    info = json.loads((root / "meta" / "info.json").read_text())
    data = pq.read_table(root / "data" / "chunk-000" / "file-000.parquet")
    assert data.num_rows == info["total_frames"] > 5
    assert info["features"]["observation.state"]["shape"] == [4] and info["features"]["action"]["shape"] == [4]
    actions = np.stack(data["action"].to_pylist())
    assert np.abs(actions).max() <= 1 + 1e-6 and np.abs(actions).max() > 0.05  # the expert moved
    for camera in ("corner", "gripperPOV"):
        path = root / "videos" / f"observation.images.{camera}" / "chunk-000" / "file-000.mp4"
        with av.open(str(path)) as container:
            frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
        assert len(frames) == info["total_frames"]
        assert frames[0].shape == (32, 40, 3) and frames[0].std() > 5  # a rendered scene, not a blank frame
    tasks = pq.read_table(root / "meta" / "tasks.parquet").to_pandas()
    assert list(tasks.index) == ["reach the red goal position"]
    recorded = json.loads((root / "meta" / "environment.json").read_text())
    assert recorded["env"] == "metaworld" and recorded["seed"] == 3 and recorded["tasks"] == ["reach-v3"]
    assert recorded["settings"]["image_size"] == [32, 40] and recorded["settings"]["goal_marker_radius"] is None


def test_failed_attempts_are_dropped_unless_kept_for_video(tmp_path):
    from gigaworld_policy.data.lerobot import LeRobotDataset
    from gigaworld_policy.envs.recording import collect

    # 4 steps are too few for the expert to reach the goal: every attempt fails
    with pytest.raises(RuntimeError, match="the reach-v3 expert succeeded only 0 times in 13 attempts"):
        collect(settings(image_size=(16, 16)), ["reach-v3"], 1, tmp_path / "dropped", max_steps=4, progress=False)
    report = collect(settings(image_size=(16, 16)), ["reach-v3"], 2, tmp_path / "kept", max_steps=4, progress=False,
                     keep_failures=True)
    assert report["reach-v3"] == {"episodes": 2, "attempts": 2, "expert_success_rate": 0.0}
    assert [e.length for e in LeRobotDataset(tmp_path / "kept").episodes] == [4, 4]


def _goal_pixels(image: np.ndarray) -> int:
    """Pixels of push-v3's green goal sphere: green well above red and blue (nothing else in the scene is)."""
    red, green, blue = (image[..., c].astype(int) for c in range(3))
    return int(((green > red + 60) & (green > blue + 60)).sum())


def test_a_larger_goal_marker_shows_the_goal_and_changes_nothing_else():
    from gigaworld_policy.envs.metaworld import MetaWorldEnv

    default = MetaWorldEnv("push-v3", settings(image_size=(64, 64)))
    marked = MetaWorldEnv("push-v3", settings(image_size=(64, 64), goal_marker_radius=0.05))
    seen, shown = default.reset(4), marked.reset(4)
    assert _goal_pixels(shown.images["corner"]) >= 4 * max(1, _goal_pixels(seen.images["corner"]))
    np.testing.assert_array_equal(seen.state, shown.state)  # same layout and robot: only the picture differs
    for _ in range(20):
        action = default.expert_action()
        np.testing.assert_array_equal(action, marked.expert_action())
        assert default.step(action) == marked.step(action)
    np.testing.assert_array_equal(default.observe().state, marked.observe().state)  # the marker does not collide
    default.close(), marked.close()


def test_same_seed_same_layout():
    from gigaworld_policy.envs.metaworld import MetaWorldEnv

    env = MetaWorldEnv("reach-v3", settings())
    first = env.reset(7).images["corner"]
    goal = env.goal
    env.reset(8)
    assert not np.allclose(env.goal, goal)
    assert np.array_equal(env.reset(7).images["corner"], first) and np.allclose(env.goal, goal)
    np.testing.assert_array_equal(env.raw_observation[:4].astype(np.float32), env.observe().state)  # its first 4
    env.close()


def test_observe_goal_appends_the_goal_to_the_state_and_records_it(tmp_path):
    from gigaworld_policy.envs.metaworld import MetaWorldEnv
    from gigaworld_policy.envs.recording import collect, read_recording

    plain = MetaWorldEnv("push-v3", settings())
    with_goal = MetaWorldEnv("push-v3", settings(observe_goal=True))
    seen, told = plain.reset(5), with_goal.reset(5)
    np.testing.assert_array_equal(told.images["corner"], seen.images["corner"])
    np.testing.assert_array_equal(told.state[:4], seen.state)
    np.testing.assert_allclose(told.state[4:], with_goal.goal, atol=1e-6)  # Meta-World's obs[36:39] is the goal
    with_goal.reset(6)
    assert not np.allclose(with_goal.observe().state[4:], told.state[4:])  # another layout, another goal
    plain.close(), with_goal.close()

    collect(settings(observe_goal=True), ["reach-v3"], episodes=1, out=tmp_path / "mw", progress=False)
    info = json.loads((tmp_path / "mw" / "meta" / "info.json").read_text())
    assert info["features"]["observation.state"]["names"] == ["x", "y", "z", "gripper", "goal_x", "goal_y", "goal_z"]
    states = np.stack(pq.read_table(tmp_path / "mw" / "data" / "chunk-000" / "file-000.parquet")["observation.state"]
                      .to_pylist())
    assert states.shape[1] == 7 and np.ptp(states[:, 4:], axis=0).max() == 0  # the goal stays put in an episode
    assert read_recording(tmp_path / "mw").settings.observe_goal is True


def test_settings_round_trip_through_a_recording_and_evaluation_rebuilds_the_same_env(tmp_path):
    """What `gwp collect` records, `gwp eval --dataset` reads back: the same settings, and from them an environment that
    observes exactly what the one that recorded observed for the same seed."""
    from types import SimpleNamespace

    from gigaworld_policy.envs.recording import collect, read_recording
    from gigaworld_policy.envs.registry import make_env
    from gigaworld_policy.evaluate import env_maker

    chosen = settings(cameras=("corner", "topview"), image_size=(24, 32), fps=5, goal_marker_radius=0.05,
                      observe_goal=True, action_noise=0.2, action_noise_correlation=0.5)
    report = collect(chosen, ["reach-v3"], episodes=1, out=tmp_path / "mw", seed=6, max_steps=40, progress=False)
    recording = read_recording(tmp_path / "mw")
    assert recording.settings == chosen and recording.env == "metaworld" and recording.tasks == ("reach-v3",)
    assert (recording.episodes, recording.seed, recording.max_steps) == (1, 6, 40) and recording.experts == report
    info = json.loads((tmp_path / "mw" / "meta" / "info.json").read_text())
    assert info["fps"] == 5 and info["robot_type"] == "sawyer"
    assert info["features"]["observation.state"]["names"] == list(chosen.state_names)

    # the environment evaluation builds for a policy trained on this data (its cameras, sizes and state)
    policy = SimpleNamespace(cameras=["topview"], camera_sizes=[(24, 32)], state_dim=7)
    rebuilt = env_maker(policy, recording.settings, max_steps=40)("reach-v3")
    original = make_env(chosen, "reach-v3", max_steps=40)
    seed = 6 + report["reach-v3"]["attempts"] - 1  # the kept episode's seed (task 0)
    seen, recorded = rebuilt.reset(seed), original.reset(seed)
    assert list(seen.images) == ["topview"]  # only what the policy reads is rendered
    np.testing.assert_array_equal(seen.images["topview"], recorded.images["topview"])
    np.testing.assert_array_equal(seen.state, recorded.state)
    states = pq.read_table(tmp_path / "mw" / "data" / "chunk-000" / "file-000.parquet")["observation.state"]
    np.testing.assert_allclose(seen.state, states[0].as_py(), atol=1e-6)  # the first recorded frame's state
    rebuilt.close(), original.close()


def test_the_experts_warning_about_their_constants_is_silenced_once(tmp_path):
    """Meta-World's experts warn at every step whose command they clip; importing our module silences it (and only
    it), for the whole process."""
    code = """
import warnings
from gigaworld_policy.envs.metaworld import MetaWorldEnv, MetaWorldSettings
env = MetaWorldEnv("reach-v3", MetaWorldSettings(cameras=("corner",), image_size=(8, 8)))
def warned():
    with warnings.catch_warnings(record=True) as caught:
        env.reset(0)
        for _ in range(30):
            env.step(env.expert_action())
        warnings.warn("ours")
    return sorted({str(w.message)[:20] for w in caught})
print(warned())
warnings.filters[:] = [f for f in warnings.filters if not (f[1] and f[1].pattern.startswith("Constant"))]
print(warned())
"""
    done = subprocess.run([sys.executable, "-W", "always", "-c", code], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "MUJOCO_GL": "egl"})
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.splitlines() == ["['ours']", "['Constant(s) may be t', 'ours']"]


def test_action_noise_has_the_asked_std_and_step_correlation():
    from gigaworld_policy.envs.metaworld import ActionNoise

    for correlation in (0.0, 0.9):
        noise = ActionNoise(0.5, correlation, dim=4).start(seed=0)
        steps = np.stack([noise() for _ in range(20_000)])  # (T, 4)
        assert steps.std(axis=0) == pytest.approx([0.5] * 4, rel=0.1)
        lag_one = [np.corrcoef(steps[:-1, d], steps[1:, d])[0, 1] for d in range(4)]
        assert lag_one == pytest.approx([correlation] * 4, abs=0.05)
    assert not ActionNoise(0.0, 0.9, dim=4).start(seed=0)().any()
    with pytest.raises(ValueError, match=r"correlation must lie in \[0, 1\)"):
        ActionNoise(0.5, 1.0, dim=4)
    with pytest.raises(ValueError, match="std must be a number >= 0"):
        ActionNoise(float("nan"), 0.5, dim=4)


def test_noisy_demonstrations_record_the_actions_that_were_executed(tmp_path):
    from gigaworld_policy.envs.metaworld import MetaWorldEnv
    from gigaworld_policy.envs.recording import collect

    noisy = settings(action_noise=0.5, action_noise_correlation=0.9)
    report = collect(noisy, ["reach-v3"], episodes=1, out=tmp_path / "mw", seed=4, progress=False)
    assert report["reach-v3"]["attempts"] == 1  # so the episode's seed is 4
    data = pq.read_table(tmp_path / "mw" / "data" / "chunk-000" / "file-000.parquet")
    actions, states = (np.stack(data[key].to_pylist()) for key in ("action", "observation.state"))
    env = MetaWorldEnv("reach-v3", settings())
    observation = env.reset(4)
    expert = []
    for action, state in zip(actions, states, strict=True):
        np.testing.assert_allclose(observation.state, state, atol=1e-6)  # the recorded actions replay the episode
        expert.append(env.expert_action())
        env.step(action)
        observation = env.observe()
    env.close()
    departures = np.abs(actions - np.stack(expert))  # (T, 4): noise on the hand's motion, the expert's gripper
    assert np.abs(actions).max() <= 1 and (departures[:, :3] > 0.05).mean() > 0.5 and not departures[:, 3].any()
    recorded = json.loads((tmp_path / "mw" / "meta" / "environment.json").read_text())["settings"]
    assert (recorded["action_noise"], recorded["action_noise_correlation"]) == (0.5, 0.9)


def test_closed_loop_evaluation_writes_json_and_markdown(tmp_path):
    from gigaworld_policy.cli import main
    from gigaworld_policy.envs.metaworld import MetaWorldEnv
    from gigaworld_policy.envs.recording import collect
    from gigaworld_policy.evaluate import closed_loop
    from gigaworld_policy.inference import Predictor
    from gigaworld_policy.train import TrainConfig, train

    recorded = settings(cameras=("corner", "gripperPOV"), image_size=(32, 32))
    collect(recorded, ["reach-v3"], episodes=1, out=tmp_path / "data", progress=False)
    result = train(TrainConfig(dataset=(str(tmp_path / "data"),), preset="tiny", steps=2, batch_size=2,
                               num_workers=0, log_with="none", output_dir=str(tmp_path / "run")))
    predictor = Predictor.from_checkpoint(result.checkpoint)
    assert predictor.cameras == ["corner", "gripperPOV"] and predictor.camera_sizes == [(32, 32), (32, 32)]
    assert predictor.state_dim == 4
    as_flags = ["eval", "metaworld", "--checkpoint", str(result.checkpoint), "--tasks", "reach-v3"]
    with pytest.raises(SystemExit, match=r"state of 4 numbers; the metaworld settings give 7 \(x, y, z, gripper, "
                                         r"goal_x, goal_y, goal_z\): evaluate with the settings its data was"):
        main([*as_flags, "--observe-goal", "--cameras", "corner", "gripperPOV", "--image-size", "32", "32"])
    with pytest.raises(SystemExit, match=r"trained on cameras \['corner', 'gripperPOV'\] at 32x32; the metaworld "
                                         r"settings render \['corner', 'corner2', 'gripperPOV'\] at 96x96"):
        main(as_flags)
    # as the dataset was recorded, on the tasks it recorded
    main(["eval", "--dataset", str(tmp_path / "data"), "--checkpoint", str(result.checkpoint), "--episodes", "1",
          "--max-steps", "3", "--out", str(tmp_path / "recorded")])
    assert json.loads((tmp_path / "recorded" / "eval.json").read_text())["tasks"]["reach-v3"]["mean_length"] == 3

    class CountingEnv(MetaWorldEnv):
        """Counts what each episode renders and keeps the actions it executed."""

        def reset(self, seed):
            self.observed, self.rendered, self.actions = 0, 0, []
            return super().reset(seed)

        def step(self, action):
            self.actions.append(action.copy())
            return super().step(action)

        def observe(self):
            self.observed += 1
            return super().observe()

        def render(self, camera):
            self.rendered += 1
            return super().render(camera)

    envs = []

    def make_env(task):
        envs.append(CountingEnv(task, recorded, max_steps=12))
        return envs[-1]

    report = closed_loop(predictor, make_env, ["reach-v3"], episodes=2, seed=1000, execute_steps=4,
                         out_dir=tmp_path / "eval", with_video=True, progress=False)
    # The second episode records nothing: the cameras are rendered once per plan (reset included), not per step.
    second = report["results"][1]
    plans = -(-second["length"] // 4)
    assert envs[0].observed == plans and envs[0].rendered == plans * len(predictor.cameras)
    # The sampling noise comes from the episode's seed: evaluating again executes exactly the same actions.
    executed = envs[0].actions
    again = closed_loop(predictor, make_env, ["reach-v3"], episodes=2, seed=1000, execute_steps=4, progress=False)
    assert again["results"] == report["results"] and np.array_equal(np.stack(envs[1].actions), np.stack(executed))
    # With 2 steps of inference latency, sync execution holds the robot still (hand motion 0, gripper kept) after each
    # chunk's 4 actions.
    closed_loop(predictor, make_env, ["reach-v3"], episodes=1, seed=1000, execute_steps=4, progress=False,
                delay_steps=2, execution="sync")
    delayed = np.stack(envs[-1].actions)
    assert len(delayed) > 6
    assert np.array_equal(delayed[4:6], np.stack([MetaWorldEnv.hold_action(delayed[3])] * 2))
    assert np.allclose(delayed[4:6, :3], 0) and not np.allclose(delayed[6, :3], 0)
    # ACT's temporal ensembling asks for a chunk at every step (observing at each) and says so in its report.
    ensembled = closed_loop(predictor, make_env, ["reach-v3"], episodes=1, seed=1000, execute_steps=1,
                            progress=False, execution="ensemble", ensemble_coeff=0.01)
    assert envs[-1].observed == ensembled["results"][0]["length"]  # one observation per plan, the reset's included
    assert ensembled["execution"] == {"mode": "ensemble", "delay_steps": 0, "ensemble_coeff": 0.01}
    assert report["execution"] == {"mode": "sync", "delay_steps": 0}
    with pytest.raises(ValueError, match="temporal ensembling runs without delay"):
        closed_loop(predictor, make_env, ["reach-v3"], episodes=1, execute_steps=2, delay_steps=1,
                    execution="ensemble", progress=False)
    row = report["tasks"]["reach-v3"]
    assert row["episodes"] == 2 and 0 <= row["success_rate"] <= 1 and row["mean_length"] <= 12
    assert 0 <= row["ci95"][0] <= row["success_rate"] <= row["ci95"][1] <= 1
    assert report["latency_ms"]["p50"] > 0 and report["latency_ms"]["p95"] >= report["latency_ms"]["p50"]
    assert [r["seed"] for r in report["results"]] == [1000, 1001]
    saved = json.loads((tmp_path / "eval" / "eval.json").read_text())
    assert saved["tasks"] == report["tasks"]
    assert "| reach-v3 |" in (tmp_path / "eval" / "eval.md").read_text()
    videos = tmp_path / "eval" / "videos"
    assert (videos / "reach-v3-seed1000.gif").is_file() and (videos / "reach-v3-seed1000.mp4").is_file()
    assert (videos / "reach-v3-seed1000-future.png").is_file()
    # At temperature 0 the plan no longer depends on the sampling noise; at 1 it does.
    env = make_env("reach-v3")
    observation = env.reset(1000)
    env.close()
    for temperature, same in ((0.0, True), (1.0, False)):
        plans = [Predictor(predictor.policy, temperature=temperature).predict(
            observation, generator=torch.Generator().manual_seed(seed))["actions"] for seed in (0, 1)]
        assert np.array_equal(*plans) == same
    with pytest.raises(ValueError, match="temperature must be a finite number >= 0, got -1"):
        Predictor(predictor.policy, temperature=-1)


def test_main_job_runs_end_to_end_in_a_minimal_configuration(tmp_path):
    from gigaworld_policy.cli import main
    from gigaworld_policy.demo import DemoConfig, run_demo

    report = run_demo(DemoConfig(out=str(tmp_path / "demo"), tasks=("reach-v3",), episodes=1,
                                 env=settings(cameras=("corner", "gripperPOV"), image_size=(32, 32)), preset="tiny",
                                 train_minutes=1.0, max_steps=3, batch_size=2, eval_episodes=1, episode_steps=10))
    text = report.read_text()
    assert "| reach-v3 |" in text and "trained for 3 steps" in text and "trained from random weights" in text
    assert (tmp_path / "demo" / "loss.png").is_file()
    assert (tmp_path / "demo" / "eval" / "videos" / "reach-v3-seed1000.gif").is_file()

    # --init: post-training starts from the given weights (at learning rate 0 it ends on them)
    first = tmp_path / "demo" / "train" / "checkpoints" / "last"
    again = run_demo(DemoConfig(out=str(tmp_path / "again"), tasks=("reach-v3",), episodes=1, init=str(first), lr=0.0,
                                lr_schedule="time-cosine", preset="tiny",
                                env=settings(cameras=("corner", "gripperPOV"), image_size=(32, 32)),
                                train_minutes=1.0, max_steps=2, batch_size=2, eval_episodes=1, episode_steps=10))
    assert f"post-trained from `{first}`" in again.read_text() and "decayed over the minutes" in again.read_text()

    # the checkpoint records the environment of its data: gwp eval needs neither --dataset nor settings
    main(["eval", "--checkpoint", str(first), "--episodes", "1", "--max-steps", "5", "--out", str(tmp_path / "eval")])
    evaluated = json.loads((tmp_path / "eval" / "eval.json").read_text())
    assert list(evaluated["tasks"]) == ["reach-v3"] and evaluated["tasks"]["reach-v3"]["mean_length"] <= 5
    start, end = (load_file(str(folder / "model.safetensors")) for folder in (first, tmp_path / "again" / "train" /
                                                                              "checkpoints" / "last"))
    assert start.keys() == end.keys() and all(torch.equal(start[k], end[k]) for k in start)


@pytest.mark.parametrize("handled", [True, False], ids=["gwp", "python-default"])
def test_sigterm_while_recording_leaves_no_half_written_dataset(tmp_path, handled):
    """`kill` (SIGTERM) while `gwp collect` writes: the command removes its temporary dataset folder as on Ctrl-C.
    Python's own default, which the second case keeps, ends the process with the folder still there."""
    keep_default = "import gigaworld_policy.cli as c; c.exit_cleanly_on_sigterm = lambda: None; "
    run_gwp = "import gigaworld_policy.cli as c; " if handled else keep_default
    command = [sys.executable, "-c", run_gwp + "c.main()", "collect", "metaworld", "--tasks", "reach-v3",
               "--episodes", "50", "--cameras", "corner", "--image-size", "16", "16", "--out", str(tmp_path / "mw")]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not any(tmp_path.iterdir()):  # the writer has made its temporary folder
        assert process.poll() is None and time.monotonic() < deadline, process.stderr.read().decode()
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    # Handled, Python unwinds and exits (143, or 1 when the SystemExit lands inside an import or a C callback and
    # is re-raised as another error); by default the signal kills it (-15).
    returncode = process.wait(timeout=60)
    assert returncode > 0 if handled else returncode == -signal.SIGTERM, returncode
    leftovers = sorted(p.name for p in tmp_path.iterdir())
    assert (leftovers == []) == handled, leftovers
    # the next recording into the same folder clears what the killed one left
    LeRobotDatasetWriter.create(tmp_path / "mw", fps=10, features={"a": {"dtype": "float32", "shape": [1]}}).abort()
    assert list(tmp_path.iterdir()) == []
