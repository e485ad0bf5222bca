"""LeRobot v3.0 read/write, training samples, composites, normalisation, bad input."""

import json
import os

import av
import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from helpers import CAMERAS, H, W, smooth_frame, write_dataset

from gigaworld_policy import EmbodimentSpec, GigaWorldPolicy, PolicyConfig
from gigaworld_policy.data import DataConfig, LeRobotDataset, LeRobotDatasetWriter, Normalizer, PolicyDataset
from gigaworld_policy.data.composite import composite, layout_cells
from gigaworld_policy.data.normalize import from_delta, to_delta
from gigaworld_policy.data.stats import QUANTILES
from gigaworld_policy.data.video_folder import convert_video_folder


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = ((a.astype(np.float64) - b.astype(np.float64)) ** 2).mean()
    return 10 * np.log10(255**2 / max(mse, 1e-12))


def test_round_trip_numeric_exact_images_within_codec_tolerance(tmp_path):
    # Tiny file limits force several data and video files.
    records = write_dataset(tmp_path / "ds", data_files_size_in_mb=0.001, video_files_size_in_mb=0.001)
    dataset = LeRobotDataset(tmp_path / "ds")
    assert dataset.num_frames == 50 and [e.length for e in dataset.episodes] == [20, 13, 17]
    assert dataset.tasks == ["open the drawer", "close the drawer"]
    assert len(list((tmp_path / "ds" / "data").rglob("*.parquet"))) > 1
    assert len(list((tmp_path / "ds" / "videos" / "observation.images.top").rglob("*.mp4"))) > 1
    assert np.array_equal(dataset.columns["action"], np.stack([r["action"] for r in records]))
    assert np.array_equal(dataset.columns["observation.state"], np.stack([r["observation.state"] for r in records]))
    assert dataset.task_of(25) == "close the drawer"
    for episode in dataset.episodes:
        frames = dataset.frames("left", episode.index, [0, episode.length // 2, episode.length - 1])
        for got, t in zip(frames, [0, episode.length // 2, episode.length - 1], strict=True):
            assert psnr(got, records[episode.start + t]["observation.images.left"]) >= 30


def test_stats_equal_numpy(tmp_path):
    records = write_dataset(tmp_path / "ds")
    dataset = LeRobotDataset(tmp_path / "ds")
    actions = np.stack([r["action"] for r in records]).astype(np.float64)
    stats = dataset.stats["action"]
    assert np.allclose(stats["mean"], actions.mean(0)) and np.allclose(stats["std"], actions.std(0))
    assert np.allclose(stats["min"], actions.min(0)) and np.allclose(stats["max"], actions.max(0))
    for name, q in QUANTILES.items():
        assert np.allclose(stats[name], np.quantile(actions, q, axis=0))
    assert stats["count"][0] == 50
    assert dataset.stats["observation.images.top"]["mean"].shape == (3, 1, 1)


def test_plain_pyarrow_and_pyav_agree_with_info(tmp_path):
    write_dataset(tmp_path / "ds")
    root = tmp_path / "ds"
    info = json.loads((root / "meta" / "info.json").read_text())
    assert info["codebase_version"] == "v3.0" and info["total_episodes"] == 3
    rows = sum(pq.read_table(p).num_rows for p in (root / "data").rglob("*.parquet"))
    assert rows == info["total_frames"] == 50
    episodes = pq.read_table(root / "meta" / "episodes" / "chunk-000" / "file-000.parquet").to_pylist()
    for camera in CAMERAS:
        with av.open(str(next((root / "videos" / f"observation.images.{camera}").rglob("*.mp4")))) as video:
            assert sum(1 for _ in video.decode(video=0)) == info["total_frames"]
        key = f"videos/observation.images.{camera}"
        assert episodes[1][f"{key}/from_timestamp"] == pytest.approx(20 / 10)
        assert episodes[1][f"{key}/to_timestamp"] == pytest.approx(33 / 10)


def tiny_config(**changes) -> PolicyConfig:
    config = PolicyConfig.preset("tiny").replace(embodiments=(EmbodimentSpec("robot", 4, 4),), max_state_dim=4,
                                                 max_action_dim=4, chunk_size=8, num_future_frames=2,
                                                 future_stride=4)
    return config.replace(**changes)


def test_chunk_and_future_padding_at_episode_end(tmp_path):
    records = write_dataset(tmp_path / "ds")
    dataset = PolicyDataset(LeRobotDataset(tmp_path / "ds"), tiny_config(), DataConfig(normalization="mean_std"))
    sample = dataset[17]  # episode 0 (20 frames), t = 17
    assert sample["action_is_pad"].tolist() == [False] * 3 + [True] * 5
    assert sample["future_is_pad"].tolist() == [True, True]  # t + 4 = 21 > 19
    raw = dataset.processor.action.unnormalize(sample["actions"])
    assert torch.allclose(raw[:3], torch.as_tensor(np.stack([records[i]["action"] for i in (17, 18, 19)])), atol=1e-5)
    assert torch.allclose(raw[3:], raw[2].expand(5, 4), atol=1e-6)  # padding repeats the last action
    assert torch.equal(sample["future_images"][0], sample["future_images"][1])  # clamped to the last frame
    first = dataset[20]  # first frame of episode 1: nothing padded
    assert not first["action_is_pad"].any() and not first["future_is_pad"].any()
    assert first["task"] == "close the drawer"


def test_data_loader_batches_train_the_policy(tmp_path):
    write_dataset(tmp_path / "ds")
    config = tiny_config()
    dataset = PolicyDataset(LeRobotDataset(tmp_path / "ds"), config)
    first = dataset[0]  # decoded here, before the workers fork: they inherit the open decoder and must not hang
    loader = torch.utils.data.DataLoader(dataset, batch_size=4, shuffle=False, num_workers=2, timeout=60)
    batch = next(iter(loader))
    assert torch.equal(batch["image"][0], first["image"])
    assert batch["image"].shape == (4, 3, 32, 32) and batch["image"].abs().max() <= 1
    policy = GigaWorldPolicy(config)
    table = {task: torch.randn(3, config.transformer.text_dim) for task in LeRobotDataset(tmp_path / "ds").tasks}
    policy.text_encoder = lambda tasks: (torch.stack([table[t] for t in tasks]), torch.ones(len(tasks), 3, dtype=bool))
    loss, info = policy.compute_loss(batch)
    loss.backward()
    assert torch.isfinite(loss) and info["loss_action"] > 0 and info["loss_video"] > 0


def test_video_folder_becomes_a_video_only_dataset_that_trains(tmp_path):
    folder = tmp_path / "clips"
    folder.mkdir()
    for clip in range(2):
        with av.open(str(folder / f"clip{clip}.mp4"), mode="w") as container:
            stream = container.add_stream("libx264", rate=10)
            stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
            for t in range(12):
                frame = av.VideoFrame.from_ndarray(smooth_frame(clip, t, 0), format="rgb24")
                for packet in stream.encode(frame):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
    (folder / "clip1.txt").write_text("a person opens a drawer\n")
    convert_video_folder(folder, tmp_path / "video_only", progress=False)
    dataset = LeRobotDataset(tmp_path / "video_only")
    assert not dataset.has_actions and dataset.num_frames == 24
    assert dataset.tasks == ["", "a person opens a drawer"]
    samples = PolicyDataset(dataset, tiny_config())
    sample = samples[3]
    assert "actions" not in sample and "state" not in sample
    batch = torch.utils.data.default_collate([samples[i] for i in (0, 5, 13)])
    batch["text_embeds"] = torch.randn(3, 2, tiny_config().transformer.text_dim)
    loss, info = GigaWorldPolicy(tiny_config()).compute_loss(batch)
    assert info["loss_action"] == 0 and info["loss_video"] > 0


def test_composite_layout_geometry():
    red = torch.zeros(3, 10, 20)
    red[0] = 1
    green = torch.zeros(3, 10, 10)
    green[1] = 1
    blue = torch.zeros(3, 40, 10)
    blue[2] = 1
    image = composite([red, green, blue], "t", (64, 80))
    assert image.shape == (3, 64, 80)
    assert (image[0, :32] == 1).sum() > 0 and (image[0, 32:] == 1).sum() == 0  # first view on top
    assert image[:, 48, 20].tolist() == [0, 1, 0]  # green bottom-left, square view fills 32x40 letterboxed
    assert image[2, 48, 60] == 1 and image[:, 48, 41].tolist() == [-1, -1, -1]  # tall blue view, black bars
    assert layout_cells("row", 4, 10, 40) == [(0, 0, 10, 10), (0, 10, 10, 10), (0, 20, 10, 10), (0, 30, 10, 10)]
    stretched = composite([blue], "single", (16, 16), fit="stretch")
    assert torch.allclose(stretched[2], torch.ones(16, 16))
    with pytest.raises(ValueError, match="layout 't' takes 3 camera view"):
        composite([red], "t", (64, 80))


def test_normaliser_and_delta_actions_invert():
    stats = {"q01": np.array([-2.0, 0.0]), "q99": np.array([2.0, 10.0]), "mean": np.zeros(2), "std": np.ones(2)}
    normalizer = Normalizer.from_stats(stats)
    x = torch.tensor([[-2.0, 0.0], [1.0, 5.0], [2.0, 10.0]])
    assert torch.allclose(normalizer.normalize(x), torch.tensor([[-1.0, -1.0], [0.5, 0.0], [1.0, 1.0]]))
    assert torch.allclose(normalizer.unnormalize(normalizer.normalize(x)), x)
    beyond = torch.tensor([[-3.0, 12.0]])  # outside the training quantiles: kept, not clipped to the edge
    assert torch.allclose(normalizer.normalize(beyond), torch.tensor([[-1.5, 1.4]]))
    assert torch.allclose(normalizer.unnormalize(normalizer.normalize(beyond)), beyond)
    restored = Normalizer.from_dict(json.loads(json.dumps(normalizer.to_dict())))
    assert torch.equal(restored.normalize(beyond), normalizer.normalize(beyond))
    clipping = Normalizer.from_dict({**normalizer.to_dict(), "clip": True})  # a checkpoint from before
    assert torch.allclose(clipping.normalize(beyond), torch.tensor([[-1.0, 1.0]]))
    actions, state, mask = torch.randn(2, 5, 3), torch.randn(2, 4), torch.tensor([True, False, True])
    delta = to_delta(actions, state, mask)
    assert torch.allclose(delta[..., 1], actions[..., 1])
    assert torch.allclose(delta[:, :, 0], actions[:, :, 0] - state[:, None, 0])
    assert torch.allclose(from_delta(delta, state, mask), actions)


def test_crash_while_writing_leaves_no_dataset(tmp_path):
    with pytest.raises(RuntimeError, match="robot fell over"):
        with LeRobotDatasetWriter.create(tmp_path / "ds", 10, {"action": {"dtype": "float32", "shape": [2]}}) as w:
            w.add_frame({"action": np.zeros(2), "task": "t"})
            w.save_episode()
            raise RuntimeError("robot fell over")
    assert os.listdir(tmp_path) == []


def test_bad_input_is_named(tmp_path):
    write_dataset(tmp_path / "ds")
    root = tmp_path / "ds"
    with pytest.raises(ValueError, match="camera 'wrist' does not exist"):
        PolicyDataset(LeRobotDataset(root), tiny_config(), DataConfig(cameras=("wrist",)))
    with pytest.raises(ValueError, match="episode 1 has 13 frames, shorter than the action chunk \\(16\\)"):
        PolicyDataset(LeRobotDataset(root), tiny_config(chunk_size=16))
    with LeRobotDatasetWriter.create(tmp_path / "nan", 10, {"action": {"dtype": "float32", "shape": [2]}}) as w:
        with pytest.raises(ValueError, match="'action' contains NaN"):
            w.add_frame({"action": np.array([0.0, np.nan]), "task": "t"})
        with pytest.raises(ValueError, match=r"'action' must have shape \(2,\)"):
            w.add_frame({"action": np.zeros(3), "task": "t"})
        w.add_frame({"action": np.zeros(2), "task": "t"})
        w.save_episode()
        with pytest.raises(ValueError, match=r"may not replace the format's own meta/ files \['info.json'\]"):
            w.finalize(extra_meta={"info.json": {}})
        w.finalize(extra_meta={"recorder.json": {"by": "test"}})
    assert json.loads((tmp_path / "nan" / "meta" / "recorder.json").read_text()) == {"by": "test"}

    video = next((root / "videos" / "observation.images.top").rglob("*.mp4"))
    video.write_bytes(b"not a video")
    with pytest.raises(ValueError, match=f"cannot open video {video}"):
        LeRobotDataset(root).frames("top", 0, [0])
    info_path = root / "meta" / "info.json"
    info = json.loads(info_path.read_text())
    info_path.write_text(json.dumps({**info, "total_frames": 99}))
    with pytest.raises(ValueError, match="info.json says 99 frames, data files hold 50"):
        LeRobotDataset(root)
    next((root / "data").rglob("*.parquet")).unlink()
    with pytest.raises(FileNotFoundError, match="dataset file is missing: .*file-000.parquet"):
        LeRobotDataset(root)


def test_precomputed_latents_give_the_same_loss_as_images(tmp_path):
    from gigaworld_policy.data.latents import LatentDataset, precompute_latents

    write_dataset(tmp_path / "ds", lengths=(12, 10))
    config = tiny_config()
    samples = PolicyDataset(LeRobotDataset(tmp_path / "ds"), config)
    policy = GigaWorldPolicy(config)
    precompute_latents(samples, policy.codec, tmp_path / "latents", batch_size=5, dtype="float32", progress=False)
    latent_samples = LatentDataset(samples, tmp_path / "latents")
    sample = latent_samples[3]
    assert "image" not in sample and sample["latents"].shape == (48, 3, 8, 8)
    indices = [0, 7, 13, 21]
    with_images = torch.utils.data.default_collate([samples[i] for i in indices])
    with_latents = torch.utils.data.default_collate([latent_samples[i] for i in indices])
    for batch in (with_images, with_latents):
        batch["text_embeds"] = torch.ones(4, 2, config.transformer.text_dim)
    loss_images, _ = policy.compute_loss(with_images, torch.Generator().manual_seed(0))
    loss_latents, _ = policy.compute_loss(with_latents, torch.Generator().manual_seed(0))
    assert torch.allclose(loss_images, loss_latents, atol=1e-5)
    assert torch.equal(policy.sample_actions(with_latents, noise=torch.zeros(4, 8, 4)),
                       policy.sample_actions(with_images, noise=torch.zeros(4, 8, 4)))
    with pytest.raises(ValueError, match="were made differently"):
        LatentDataset(PolicyDataset(LeRobotDataset(tmp_path / "ds"), config, DataConfig(layout="row")),
                      tmp_path / "latents")


def test_a_written_dataset_is_as_readable_as_any_new_folder(tmp_path):
    """The writer fills a private temporary folder, then renames it: the result must not stay private (0700)."""
    write_dataset(tmp_path / "data", lengths=(3,))
    (tmp_path / "plain").mkdir()
    assert (tmp_path / "data").stat().st_mode & 0o777 == (tmp_path / "plain").stat().st_mode & 0o777
