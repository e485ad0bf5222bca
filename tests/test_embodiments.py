"""One policy over several robots: datasets of different robot_types train one embodiment each (own state/action
sizes, cameras, camera sizes and frame rates) through the shared transformer, and evaluation acts as the right one."""

import numpy as np
import pytest
from helpers import write_robot

from gigaworld_policy.cli import Checkpoint, Sampling
from gigaworld_policy.data import LeRobotDataset
from gigaworld_policy.envs.base import Observation
from gigaworld_policy.evaluate import dataset_embodiment, open_loop_dataset
from gigaworld_policy.inference import Predictor, load_checkpoint
from gigaworld_policy.train import OptimConfig, TrainConfig, dataset_embodiments, sized_to_data, train


@pytest.fixture(scope="module")
def two_robots(tmp_path_factory):
    root = tmp_path_factory.mktemp("robots")
    return (write_robot(root / "sawyer", "sawyer", ("corner", "corner2"), (32, 32), 4, fps=10),
            write_robot(root / "aloha", "aloha", ("top",), (24, 32), 14, fps=50))


def config(datasets, out, **changes) -> TrainConfig:
    return TrainConfig(**{**dict(dataset=datasets, preset="tiny", steps=3, output_dir=str(out), batch_size=4,
                                 num_workers=0, save_every=3, log_with="none",
                                 optim=OptimConfig(lr=1e-3, warmup_steps=1)), **changes})


def test_each_robot_trains_its_own_embodiment_and_acts_as_itself(two_robots, tmp_path):
    cfg = config(two_robots, tmp_path / "run")
    said = []
    sized = sized_to_data(cfg.policy(), cfg, said.append)
    assert [(e.name, e.state_dim, e.action_dim) for e in sized.embodiments] == [("sawyer", 4, 4), ("aloha", 14, 14)]
    assert sized.max_state_dim >= 14 and sized.max_action_dim >= 14 and "one embodiment per robot" in said[0]
    assert dataset_embodiments(sized, cfg) == [0, 1]

    policy = load_checkpoint(train(cfg).checkpoint)
    assert policy.processors["sawyer"].cameras == ("corner", "corner2")
    assert policy.processors["aloha"].cameras == ("top",) and policy.processors["aloha"].action.dim == 14
    robots = (("sawyer", ("corner", "corner2"), (32, 32), 4), ("aloha", ("top",), (24, 32), 14))
    for robot, cameras, size, dims in robots:
        predictor = Predictor(policy, robot, temperature=0)
        observation = Observation({c: np.zeros((*size, 3), np.uint8) for c in cameras}, np.zeros(dims, np.float32),
                                  f"a task of the {robot}")
        assert predictor.predict(observation)["actions"].shape == (policy.config.chunk_size, dims)
    # evaluation acts as the environment's robot where the policy has it, else as the policy's first
    load = Checkpoint(str(tmp_path / "run" / "checkpoints" / "last"))
    assert Sampling().predictor(load, robot="aloha").embodiment == "aloha"
    assert Sampling().predictor(load, robot="koch").embodiment == "sawyer"
    # open-loop scoring reads each robot's data as that robot, or as the one named
    for root, (robot, *_) in zip(two_robots, robots, strict=True):
        assert dataset_embodiment(policy, LeRobotDataset(root)) == robot
        assert np.isfinite(open_loop_dataset(policy, root, last_episodes=1, max_samples=4)["action_mse"])
    with pytest.raises(ValueError, match="embodiment 'sawyer' expects state_dim 4"):
        open_loop_dataset(policy, two_robots[1], last_episodes=1, max_samples=4, embodiment="sawyer")


def test_robots_the_data_cannot_tell_apart_are_a_sentence(two_robots, tmp_path):
    unnamed = write_robot(tmp_path / "unnamed", None, ("top",), (24, 32), 14, fps=50, episodes=1)
    cfg = config((two_robots[0], unnamed), tmp_path / "run")
    with pytest.raises(ValueError, match=r"unnamed names no robot_type in its info.json, and the other datasets are "
                                         r"of other robots \(\['sawyer'\]\)"):
        sized_to_data(cfg.policy(), cfg, print)
    other = write_robot(tmp_path / "other", "aloha", ("top",), (24, 32), 7, fps=50, episodes=1)
    cfg = config((*two_robots, other), tmp_path / "run")
    with pytest.raises(ValueError, match=r"other is robot 'aloha' with state 7 and action 7 numbers, another "
                                         r"dataset of that robot has 14 and 14"):
        sized_to_data(cfg.policy(), cfg, print)


def test_data_of_one_robot_name_the_embodiment_and_grow_the_padded_sizes(two_robots, tmp_path):
    cfg = config((two_robots[1],), tmp_path / "run", preset="small")  # small pads to 8 numbers, the robot has 14
    sized = sized_to_data(cfg.policy(), cfg, print)
    assert [(e.name, e.state_dim, e.action_dim) for e in sized.embodiments] == [("aloha", 14, 14)]
    assert (sized.max_state_dim, sized.max_action_dim) == (14, 14)
