"""Shared test data: a small LeRobot dataset with three smooth-image cameras, state and actions."""

import numpy as np

from gigaworld_policy.data import LeRobotDatasetWriter

H, W = 32, 48
CAMERAS = ("top", "left", "right")


def smooth_frame(episode: int, t: int, camera: int) -> np.ndarray:
    """A smooth, varying image (codecs handle it well, so PSNR is meaningful)."""
    y, x = np.mgrid[0:H, 0:W]
    base = 128 + 60 * np.sin(x / 7 + t / 4 + camera) + 40 * np.cos(y / 5 + episode)
    return np.stack([base, base * 0.8 + 20, 255 - base], axis=-1).clip(0, 255).astype(np.uint8)


def write_dataset(root, lengths=(20, 13, 17), with_actions=True, state_dim=4, camera_dtype="video", **limits):
    """camera_dtype: "video" (mp4) or "image" (PNG in the data files)."""
    rng = np.random.default_rng(0)
    features = {f"observation.images.{c}": {"dtype": camera_dtype, "shape": [H, W, 3]} for c in CAMERAS}
    features["observation.state"] = {"dtype": "float32", "shape": [state_dim], "names": None}
    if with_actions:
        features["action"] = {"dtype": "float32", "shape": [4], "names": None}
    records = []
    with LeRobotDatasetWriter.create(root, fps=10, features=features, **limits) as writer:
        for episode, length in enumerate(lengths):
            for t in range(length):
                frame = {f"observation.images.{c}": smooth_frame(episode, t, i) for i, c in enumerate(CAMERAS)}
                frame["observation.state"] = rng.normal(size=state_dim).astype(np.float32)
                if with_actions:
                    frame["action"] = rng.normal(size=4).astype(np.float32)
                frame["task"] = ["open the drawer", "close the drawer"][episode % 2]
                writer.add_frame(frame)
                records.append(frame)
            writer.save_episode()
        writer.finalize()
    return records


def write_robot(root, robot_type, cameras, size, dims, fps, episodes=2, length=24):
    """A dataset of robot `robot_type`: random frames of `cameras` at `size` (H, W), state and action of `dims`."""
    rng = np.random.default_rng(len(cameras) + dims)
    features = {f"observation.images.{c}": {"dtype": "video", "shape": [*size, 3]} for c in cameras}
    features["observation.state"] = {"dtype": "float32", "shape": [dims], "names": None}
    features["action"] = {"dtype": "float32", "shape": [dims], "names": None}
    with LeRobotDatasetWriter.create(root, fps=fps, features=features, robot_type=robot_type) as writer:
        for _ in range(episodes):
            for _ in range(length):
                frame = {f"observation.images.{c}": rng.integers(0, 255, (*size, 3), dtype=np.uint8) for c in cameras}
                frame["observation.state"] = rng.normal(size=dims).astype(np.float32)
                frame["action"] = (3 + rng.normal(size=dims)).astype(np.float32)
                frame["task"] = f"a task of the {robot_type}"
                writer.add_frame(frame)
            writer.save_episode()
        writer.finalize()
    return str(root)
