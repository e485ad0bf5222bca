"""Datasets as LeRobot's own tools leave them: aggregated statistics, no quantiles, cameras stored as images, the
column order of its reader; and every broken metadata file gets a sentence that names it."""

import json
import warnings

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from helpers import CAMERAS, write_dataset

from gigaworld_policy import EmbodimentSpec, GigaWorldPolicy, PolicyConfig
from gigaworld_policy.cli import main
from gigaworld_policy.data import LeRobotDataset, LeRobotDatasetWriter, PolicyDataset
from gigaworld_policy.data.stats import QUANTILES


def tiny_config(**changes) -> PolicyConfig:
    config = PolicyConfig.preset("tiny").replace(embodiments=(EmbodimentSpec("robot", 4, 4),), max_state_dim=4,
                                                 max_action_dim=4, chunk_size=8, num_future_frames=2,
                                                 future_stride=4)
    return config.replace(**changes)


def write_gripper_dataset(root, lengths=(12, 10, 14)):
    """Actions whose dim 3 (a gripper) is constant within each episode but differs between them (+1, -1, +1) and
    whose dim 2 is 0.5 throughout; dims 0, 1 vary."""
    rng = np.random.default_rng(1)
    features = {"observation.images.top": {"dtype": "video", "shape": [16, 16, 3]},
                "observation.state": {"dtype": "float32", "shape": [4]},
                "action": {"dtype": "float32", "shape": [4]}}
    with LeRobotDatasetWriter.create(root, fps=10, features=features) as writer:
        for episode, length in enumerate(lengths):
            for _ in range(length):
                action = np.array([*rng.normal(size=2), 0.5, 1.0 if episode % 2 == 0 else -1.0], dtype=np.float32)
                writer.add_frame({"observation.images.top": rng.integers(0, 255, (16, 16, 3), dtype=np.uint8),
                                  "observation.state": rng.normal(size=4).astype(np.float32), "action": action,
                                  "task": "grip"})
            writer.save_episode()
        writer.finalize()


def aggregate_like_lerobot(root) -> None:
    """Rewrite meta/stats.json as LeRobot's aggregation does: each quantile is the length-weighted mean of the
    per-episode quantiles (min/max/mean/std are aggregated exactly)."""
    episodes = pq.read_table(root / "meta" / "episodes" / "chunk-000" / "file-000.parquet").to_pylist()
    stats = json.loads((root / "meta" / "stats.json").read_text())
    lengths = np.array([e["length"] for e in episodes], dtype=np.float64)
    for key in ("observation.state", "action"):
        for name in QUANTILES:
            per_episode = np.array([e[f"stats/{key}/{name}"] for e in episodes])
            stats[key][name] = (per_episode * lengths[:, None]).sum(0) / lengths.sum()
            stats[key][name] = stats[key][name].tolist()
    (root / "meta" / "stats.json").write_text(json.dumps(stats))


def test_quantiles_aggregated_by_lerobot_do_not_blow_up_the_actions(tmp_path):
    root = tmp_path / "ds"
    write_gripper_dataset(root)
    aggregate_like_lerobot(root)
    stats = LeRobotDataset(root).stats["action"]
    assert stats["q01"][3] == pytest.approx(stats["q99"][3])  # the artefact: the gripper looks constant
    with pytest.warns(UserWarning, match=r"action: dims \[2, 3\] have a \(near-\)zero q01..q99 range"):
        samples = PolicyDataset(LeRobotDataset(root), tiny_config())
    actions = torch.stack([samples.sample(i, images=False)["actions"] for i in range(len(samples))])
    assert torch.allclose(actions[..., 3].abs(), torch.ones(())), "the gripper maps min..max to -1..1"
    assert torch.equal(actions[..., 2], torch.zeros_like(actions[..., 2])), "a constant dim is left as it is"
    assert actions.abs().max() < 10
    batch = torch.utils.data.default_collate([samples[i] for i in range(0, 30, 5)])
    batch["text_embeds"] = torch.ones(len(batch["task"]), 2, tiny_config().transformer.text_dim)
    torch.manual_seed(0)
    loss, _ = GigaWorldPolicy(tiny_config()).compute_loss(batch, torch.Generator().manual_seed(0))
    assert torch.isfinite(loss) and loss < 100


def test_statistics_of_another_size_or_not_finite_are_named(tmp_path):
    root = tmp_path / "ds"
    write_dataset(root)
    stats_path = root / "meta" / "stats.json"
    clean = json.loads(stats_path.read_text())
    for key, name, value, shape in (("action", "q01", [0.0], r"\(1,\)"), ("observation.state", "q99", [None] * 4,
                                                                            r"\(4,\)")):
        stats_path.write_text(json.dumps({**clean, key: {**clean[key], name: value}}))
        with pytest.raises(ValueError, match=rf"stats.json's \['{name}'\] of '{key}' must be finite and of the "
                                             rf"feature's shape \(4,\), got shapes \[{shape}\]"):
            PolicyDataset(LeRobotDataset(root), tiny_config())


def test_statistics_without_quantiles_are_computed_from_the_data(tmp_path):
    root = tmp_path / "ds"
    write_dataset(root)
    exact = PolicyDataset(LeRobotDataset(root), tiny_config())
    stats = json.loads((root / "meta" / "stats.json").read_text())
    for key in ("observation.state", "action"):
        stats[key] = {k: v for k, v in stats[key].items() if k not in QUANTILES}  # as LeRobot's v2.1 converter
    (root / "meta" / "stats.json").write_text(json.dumps(stats))
    with pytest.warns(UserWarning, match=r"meta/stats.json has no \['q01', 'q99'\] for 'action'; computed from"):
        computed = PolicyDataset(LeRobotDataset(root), tiny_config())
    for name in ("state", "action"):
        assert torch.allclose(getattr(computed.processor, name).scale, getattr(exact.processor, name).scale)
        assert torch.allclose(getattr(computed.processor, name).offset, getattr(exact.processor, name).offset)


def test_cameras_stored_as_images_read_back_exactly(tmp_path):
    root = tmp_path / "ds"
    records = write_dataset(root, camera_dtype="image")
    assert not (root / "videos").exists()
    dataset = LeRobotDataset(root)
    assert dataset.camera_keys == [f"observation.images.{c}" for c in CAMERAS]
    for episode in dataset.episodes:
        frames = dataset.frames("left", episode.index, [0, episode.length - 1])
        assert np.array_equal(frames[0], records[episode.start]["observation.images.left"])
        assert np.array_equal(frames[1], records[episode.start + episode.length - 1]["observation.images.left"])
    sample = PolicyDataset(dataset, tiny_config())[25]
    assert sample["image"].shape == (3, *tiny_config().image_size) and sample["future_images"].shape[0] == 2


def test_data_columns_follow_the_order_of_info_json(tmp_path):
    root = tmp_path / "ds"
    write_dataset(root)
    features = json.loads((root / "meta" / "info.json").read_text())["features"]
    stored = [k for k, spec in features.items() if spec["dtype"] != "video"]
    for path in (root / "data").rglob("*.parquet"):
        assert pq.read_schema(path).names == stored


def edit_info(root, **changes) -> None:
    path = root / "meta" / "info.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


def edit_camera(root, key, **changes) -> None:
    path = root / "meta" / "info.json"
    info = json.loads(path.read_text())
    info["features"][key].update(changes)
    path.write_text(json.dumps(info))


BROKEN_METADATA = {
    "info is a list": (lambda root: (root / "meta" / "info.json").write_text("[1, 2]"),
                       r"info.json must hold a JSON object, got a list"),
    "no features": (lambda root: edit_info(root, features=None), r"info.json: 'features' must be a JSON object"),
    "fps 0": (lambda root: edit_info(root, fps=0), r"info.json: 'fps' must be a positive number, got 0"),
    "fps a string": (lambda root: edit_info(root, fps="10"), r"info.json: 'fps' must be a positive number, got '10'"),
    "fps of other videos": (lambda root: edit_info(root, fps=11),
                            r"info.json says fps 11, but .*file-000.mp4 runs at 10 frames per second"),
    "camera size of other videos": (lambda root: edit_camera(root, "observation.images.top", shape=[40, 48, 3]),
                                    r"info.json says 'observation.images.top' is \(40, 48\) \(height, width\), but "
                                    r".*file-000.mp4 is \(32, 48\)"),
    "camera shape": (lambda root: edit_camera(root, "observation.images.top", shape=[32, 48]),
                     r"feature 'observation.images.top': a camera's shape must be \(height, width, 3\)"),
    "garbage info": (lambda root: (root / "meta" / "info.json").write_bytes(b"\xff\xfe\x00garbage"),
                     r"info.json is not a JSON file"),
    "garbage stats": (lambda root: (root / "meta" / "stats.json").write_bytes(b"\x89PNG\x00\xff"),
                      r"stats.json is not a JSON file"),
    "stats not numbers": (lambda root: (root / "meta" / "stats.json").write_text('{"action": {"mean": "a"}}'),
                          r"stats.json: statistics of 'action' must be numbers"),
    "v2.1": (lambda root: edit_info(root, codebase_version="v2.1"),
             r"codebase_version 'v2.1' is not supported here \(expected v3.x\); convert it with `gwp convert "
             r"lerobot-v21 SRC DST`"),
    "corrupt parquet body": (lambda root: corrupt_middle(next((root / "data").rglob("*.parquet"))),
                             r"corrupt parquet file .*file-000.parquet"),
    # episodes of 12 and 10 frames: the second starts at row 12
    "episode start off by one": (lambda root: edit_parquet(episodes_file(root), "dataset_from_index", 1, 11),
                                 r"meta/episodes puts episode 1 at rows \[11, 21\), but the data files hold it at "
                                 r"rows 12\.\.21"),
    "a row given to another episode": (lambda root: edit_parquet(data_file(root), "episode_index", 21, 7),
                                       r"episode 1 has length 10 in meta/episodes but 9 rows"),
    "rows of an unlisted episode": (lambda root: (edit_parquet(data_file(root), "episode_index", 21, 7),
                                                  edit_parquet(episodes_file(root), "length", 1, 9)),
                                    r"the data files hold episodes \[7\] that meta/episodes does not list"),
    "video segment shorter than its episode": (
        lambda root: edit_parquet(episodes_file(root), "videos/observation.images.top/to_timestamp", 0, 1.0),
        r"gives episode 0's 'observation.images.top' video 1.000 s of file-000.mp4, shorter than its 12 frames at 10 "
        r"fps"),
    "task indices with a gap": (lambda root: edit_parquet(root / "meta" / "tasks.parquet", "task_index", 0, 5),
                                r"meta/tasks.parquet's task_index must run 0\.\.\d+, got \["),
    "a frame of an unknown task": (lambda root: edit_parquet(data_file(root), "task_index", 3, 9),
                                   r"the data files name task_index 9, but meta/tasks.parquet has \d+ tasks"),
    "a dropped frame": (lambda root: edit_parquet(data_file(root), "timestamp", 5, 0.6),
                        r"episode 0's frame 5 has timestamp 0.6000 s in the data files, expected 0.5000 s at 10 fps"),
    "NaN action": (lambda root: edit_parquet(data_file(root), "action", 15, [0.0, float("nan"), 0.0, 0.0]),
                   r"feature 'action' has NaN or infinite values, first at frame 15 \(episode 1\)"),
    "infinite state": (lambda root: edit_parquet(data_file(root), "observation.state", 3, [float("inf")] * 4),
                       r"feature 'observation.state' has NaN or infinite values, first at frame 3 \(episode 0\)"),
}


def edit_parquet(path, column: str, row: int, value) -> None:
    """Set one cell of a parquet file (the writer refuses such values, so they are put in afterwards)."""
    table = pq.read_table(path)
    values = table[column].to_pylist()
    values[row] = value
    index = table.schema.get_field_index(column)
    pq.write_table(table.set_column(index, table.schema.field(index), pa.array(values, table[column].type)), path)


def episodes_file(root):
    return next((root / "meta" / "episodes").rglob("*.parquet"))


def data_file(root):
    return next((root / "data").rglob("*.parquet"))


def corrupt_middle(path) -> None:
    data = bytearray(path.read_bytes())
    data[8: len(data) // 2] = b"\x55" * (len(data) // 2 - 8)  # keeps the magic bytes and the footer
    path.write_bytes(bytes(data))


@pytest.fixture(scope="module")
def clean_dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("clean") / "ds"
    write_dataset(root, lengths=(12, 10))
    return root


@pytest.mark.parametrize("case", sorted(BROKEN_METADATA))
def test_broken_metadata_is_named(case, clean_dataset, tmp_path):
    import shutil

    root = tmp_path / "ds"
    shutil.copytree(clean_dataset, root)
    breaks, message = BROKEN_METADATA[case]
    breaks(root)
    with pytest.raises(ValueError, match=message):
        LeRobotDataset(root)


def test_the_command_line_ends_a_broken_dataset_in_one_sentence(clean_dataset, tmp_path):
    import shutil

    root = tmp_path / "ds"
    shutil.copytree(clean_dataset, root)
    edit_info(root, fps=11)
    with pytest.raises(SystemExit) as stopped, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        main(["train", "--dataset", str(root), "--preset", "tiny", "--steps", "1", "--output-dir",
              str(tmp_path / "run"), "--log-with", "none", "--num-workers", "0"])
    message = str(stopped.value.code)
    assert message.startswith("gwp: error: ") and "\n" not in message
    assert f"{root / 'meta' / 'info.json'} says fps 11" in message
    assert not (tmp_path / "run" / "checkpoints").exists()


@pytest.mark.parametrize("camera_dtype", ["video", "image"])
def test_a_v21_dataset_converts_without_loss(camera_dtype, tmp_path):
    from lerobot_v21 import CAMERA, VIDEO_PATH, write_v21_dataset

    from gigaworld_policy.data.video import VideoDecoder

    source = tmp_path / "v21"
    records = write_v21_dataset(source, lengths=(12, 10, 9), camera_dtype=camera_dtype)
    with pytest.raises(ValueError, match="convert it with `gwp convert lerobot-v21 SRC DST`"):
        LeRobotDataset(source)
    main(["convert", "lerobot-v21", str(source), str(tmp_path / "v30")])  # every episode into one file each
    dataset = LeRobotDataset(tmp_path / "v30")
    assert [e.length for e in dataset.episodes] == [12, 10, 9] and dataset.num_frames == 31
    assert dataset.tasks == ["pick the cube", "place the cube"] and dataset.task_of(12) == "place the cube"
    assert np.array_equal(dataset.columns["action"], np.stack([r["action"] for r in records]))
    assert np.array_equal(dataset.columns["index"], np.arange(31))
    decoder = VideoDecoder()
    for episode in dataset.episodes:
        got = dataset.frames("top", episode.index, np.arange(episode.length))
        if camera_dtype == "video":  # the packets are copied: frames decode exactly as from the episode's own file
            own = source / VIDEO_PATH.format(episode_chunk=0, video_key=CAMERA, episode_index=episode.index)
            assert np.array_equal(got, decoder.decode(own, np.arange(episode.length) / 10, 10))
        else:
            assert np.array_equal(got, np.stack([r[CAMERA] for r in records[episode.start:][:episode.length]]))
    if camera_dtype == "video":
        assert len(list((tmp_path / "v30" / "videos").rglob("*.mp4"))) == 1
        main(["convert", "lerobot-v21", str(source), str(tmp_path / "split"), "--video-files-size-in-mb", "0.001",
              "--data-files-size-in-mb", "0.001"])
        split = LeRobotDataset(tmp_path / "split")
        assert len(list((tmp_path / "split" / "videos").rglob("*.mp4"))) == 3
        assert len(list((tmp_path / "split" / "data").rglob("*.parquet"))) == 3
        assert np.array_equal(split.frames("top", 2, [0, 8]), dataset.frames("top", 2, [0, 8]))
    exact = np.stack([r["action"] for r in records]).astype(np.float64)
    assert np.allclose(dataset.stats["action"]["q99"], np.quantile(exact, 0.99, axis=0))
    assert dataset.stats[CAMERA]["mean"].shape == (3, 1, 1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # complete statistics: nothing to fall back on
        sample = PolicyDataset(dataset, tiny_config())[20]
    assert sample["actions"].shape == (8, 4)
    with pytest.raises(SystemExit, match="gwp: error: .*v30 already exists"):
        main(["convert", "lerobot-v21", str(source), str(tmp_path / "v30")])


def test_a_new_writer_removes_what_killed_writers_left(tmp_path):
    import os

    dead = tmp_path / ".ds.writing-999999999-k1ll3d"  # no such process
    older = tmp_path / ".ds.writing-x7yz0abc"  # the naming before the pid was in it
    live = tmp_path / f".ds.writing-{os.getpid()}-running"  # another writer of this process, still at work
    other = tmp_path / ".other.writing-999999999-k1ll3d"  # another dataset's
    for folder in (dead, older, live, other):
        folder.mkdir()
    LeRobotDatasetWriter.create(tmp_path / "ds", fps=10, features={"a": {"dtype": "float32", "shape": [1]}}).abort()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.name, other.name])
