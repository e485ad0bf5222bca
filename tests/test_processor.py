"""The robot processor: numbers as the statistics say, robot -> model -> robot round trips, processor.json round
trips, checkpoints of the normalization.json era, and its refusals."""

import json
import shutil

import numpy as np
import pytest
import torch
from helpers import CAMERAS, H, W, write_dataset

from gigaworld_policy import GigaWorldPolicy, PolicyConfig
from gigaworld_policy.data import DataConfig, LeRobotDataset, Normalizer, PolicyDataset, RobotProcessor
from gigaworld_policy.data.composite import to_model_range, to_uint8
from gigaworld_policy.data.processor import read_processors, write_processors
from gigaworld_policy.encoders.text import TextEncoder
from gigaworld_policy.envs.base import Observation
from gigaworld_policy.inference import Predictor

CONFIG = PolicyConfig.preset("tiny")  # embodiment 'sawyer': 4 state, 4 action numbers


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("processor") / "ds"
    write_dataset(root)
    return root


@pytest.fixture(scope="module")
def samples(root):
    return PolicyDataset(LeRobotDataset(root), CONFIG, DataConfig(delta_action_dims=(0, 2)))


@pytest.fixture(scope="module")
def text_encoder():
    return TextEncoder.minilm(CONFIG.text_len)


def observation_at(dataset: LeRobotDataset, index: int) -> Observation:
    """Frame `index` as a robot would report it."""
    episode = int(dataset.columns["episode_index"][index])
    local = index - next(e.start for e in dataset.episodes if e.index == episode)
    images = {camera: dataset.frames(camera, episode, [local])[0] for camera in CAMERAS}
    return Observation(images, dataset.columns["observation.state"][index], dataset.task_of(index))


def test_normalised_numbers_are_those_the_statistics_give(root):
    """The quantile map written out from meta/stats.json, bit for bit: x -> (x - (q99 + q01) / 2) / ((q99 - q01) / 2)
    with the statistics in float64 and the map in float32."""
    samples = PolicyDataset(LeRobotDataset(root), CONFIG)
    stats = json.loads((root / "meta" / "stats.json").read_text())

    def expected(key: str, values: np.ndarray) -> torch.Tensor:
        q01, q99 = np.asarray(stats[key]["q01"]), np.asarray(stats[key]["q99"])
        offset = torch.as_tensor((q99 + q01) / 2, dtype=torch.float32)
        scale = torch.as_tensor((q99 - q01) / 2, dtype=torch.float32)
        return (torch.as_tensor(values) - offset) / scale

    columns = samples.dataset.columns
    for index, last in ((0, 19), (17, 19), (30, 32)):  # episodes of 20 and 13 frames: chunks clamp at their ends
        sample = samples[index]
        assert torch.equal(sample["state"], expected("observation.state", columns["observation.state"][index]))
        chunk = columns["action"][np.minimum(index + np.arange(CONFIG.chunk_size), last)]
        assert torch.equal(sample["actions"], expected("action", chunk))


def test_an_observation_becomes_the_batch_the_dataset_trained_on_and_actions_come_back(samples):
    processor, dataset = samples.processor, samples.dataset
    for index in (3, 25):
        sample = samples[index]
        batch = processor.preprocess(observation_at(dataset, index), CONFIG.image_size, embodiment=0)
        assert torch.equal(batch["image"][0], sample["image"])
        assert torch.equal(batch["state"][0], sample["state"])
        assert batch["embodiment"].tolist() == [0] and batch["task"] == [sample["task"]]
        # the model's actions (padded to the widest robot) back in robot units: the recorded chunk, deltas undone
        padded = torch.nn.functional.pad(sample["actions"], (0, CONFIG.max_action_dim - 4), value=7.0)[None]
        actions = processor.unnormalize_actions(padded, batch["raw_state"])[0]
        recorded = torch.as_tensor(dataset.columns["action"][index : index + CONFIG.chunk_size])
        assert actions.shape == (CONFIG.chunk_size, 4)
        assert torch.allclose(actions, recorded, atol=1e-5)
        # the delta dims are relative to the state: without it the same numbers are other actions
        assert not torch.allclose(processor.action.unnormalize(sample["actions"]), recorded, atol=1e-2)


def test_to_dict_round_trip_through_json(samples, tmp_path):
    processor = samples.processor
    assert processor.cameras == CAMERAS and processor.camera_sizes == ((H, W),) * 3 and processor.layout == "t"
    assert processor.delta_action_dims == (0, 2)
    restored = RobotProcessor.from_dict(json.loads(json.dumps(processor.to_dict())))
    assert restored == processor
    video_only = RobotProcessor(("top",), ((H, W),), "single", "stretch", None, None)
    processors = {"sawyer": processor, "human": video_only}
    write_processors(tmp_path, processors)
    assert read_processors(tmp_path) == processors
    assert json.loads((tmp_path / "processor.json").read_text())["version"] == 1
    other = Normalizer(processor.action.offset + 1e-3, processor.action.scale, clip=False)
    assert RobotProcessor.from_dict({**processor.to_dict(), "action": other.to_dict()}) != processor


def old_normalization_json(processors: dict[str, RobotProcessor]) -> dict:
    """What checkpoints held before processor.json: per embodiment, the dict PolicyDataset.normalization_state()
    made."""
    return {name: {"state": p.state.to_dict() if p.state else None, "action": p.action.to_dict() if p.action else None,
                   "delta_action_dims": list(p.delta_action_dims), "cameras": list(p.cameras),
                   "camera_sizes": [list(s) for s in p.camera_sizes], "layout": p.layout, "fit": p.fit}
            for name, p in processors.items()}


def test_a_checkpoint_with_normalization_json_loads_and_acts_the_same(samples, text_encoder, tmp_path):
    torch.manual_seed(0)
    policy = GigaWorldPolicy(CONFIG)
    policy.processors = {"sawyer": samples.processor}
    policy.save_pretrained(tmp_path / "new")
    old = shutil.copytree(tmp_path / "new", tmp_path / "old")
    (old / "processor.json").unlink()
    (old / "normalization.json").write_text(json.dumps(old_normalization_json(policy.processors), indent=2))

    observation = observation_at(samples.dataset, 5)
    actions = []
    for folder in (tmp_path / "new", old):
        loaded = GigaWorldPolicy.from_pretrained(folder)
        assert loaded.processors == policy.processors
        loaded.text_encoder = text_encoder
        prediction = Predictor(loaded).predict(observation, generator=torch.Generator().manual_seed(1))
        actions.append(prediction["actions"])
    assert actions[0].shape == (CONFIG.chunk_size, 4) and np.array_equal(actions[0], actions[1])
    # saving it again writes the new file
    GigaWorldPolicy.from_pretrained(old).save_pretrained(tmp_path / "again")
    assert read_processors(tmp_path / "again") == policy.processors
    assert not (tmp_path / "again" / "normalization.json").exists()


def test_normalization_json_from_before_cameras_were_recorded_says_what_to_add(samples, tmp_path):
    earliest = {"sawyer": {k: v for k, v in old_normalization_json({"sawyer": samples.processor})["sawyer"].items()
                           if k in ("state", "action", "delta_action_dims")}}
    (tmp_path / "normalization.json").write_text(json.dumps(earliest))
    with pytest.raises(ValueError, match=r"normalization.json: embodiment 'sawyer' records no \['cameras', "
                                         r"'camera_sizes', 'layout', 'fit'\]: .* add them as the training run had"):
        read_processors(tmp_path)


@pytest.mark.parametrize(("edit", "message"), [
    (lambda d: d.pop("layout"), r"a processor has the fields \['cameras', .*\]; this one lacks \['layout'\]$"),
    (lambda d: d.update(colour="red"), r"a processor has .*; this one has unknown \['colour'\]$"),
    (lambda d: d.update(layout="single"), r"layout 'single' takes 1 camera view\(s\), got 3"),
    (lambda d: d.update(camera_sizes=[[32, 48]]), r"3 cameras \['top', 'left', 'right'\] but 1 camera sizes"),
    (lambda d: d.update(delta_action_dims=[4]), r"delta action dims \[4\] are not among the 4 action dims"),
    (lambda d: d.update(fit="crop"), r"fit must be one of \('letterbox', 'stretch'\), got 'crop'"),
    (lambda d: d["action"].pop("scale"), r"a normaliser has 'offset', 'scale' and 'clip'; this one lacks \['scale'\]"),
])
def test_a_damaged_processor_file_is_named_with_the_embodiment(samples, tmp_path, edit, message):
    write_processors(tmp_path, {"sawyer": samples.processor})
    document = json.loads((tmp_path / "processor.json").read_text())
    edit(document["embodiments"]["sawyer"])
    (tmp_path / "processor.json").write_text(json.dumps(document))
    with pytest.raises(ValueError, match=f"processor.json: embodiment 'sawyer': {message}"):
        read_processors(tmp_path)


def test_processor_file_versions_and_absence(samples, tmp_path):
    with pytest.raises(FileNotFoundError, match="is not a policy checkpoint: processor.json is missing"):
        read_processors(tmp_path)
    write_processors(tmp_path, {"sawyer": samples.processor})
    document = json.loads((tmp_path / "processor.json").read_text())
    (tmp_path / "processor.json").write_text(json.dumps({**document, "version": 2}))
    with pytest.raises(ValueError, match="has version 2; this gigaworld-policy reads version 1: upgrade"):
        read_processors(tmp_path)


def test_a_given_processor_decides_the_composition_and_contradicting_flags_are_refused(root, samples):
    dataset = LeRobotDataset(root)
    single = PolicyDataset(dataset, CONFIG, DataConfig(cameras=("left",), fit="stretch")).processor
    reused = PolicyDataset(dataset, CONFIG, processor=single)
    assert reused.processor == single and reused[0]["image"].shape == (3, *CONFIG.image_size)
    assert torch.equal(reused[4]["image"], PolicyDataset(dataset, CONFIG, DataConfig(cameras=("left",),
                                                                                    fit="stretch"))[4]["image"])
    with pytest.raises(ValueError, match=r"composes the image with cameras \('left',\), the data config asks for "
                                         r"\('top',\): leave data.cameras unset"):
        PolicyDataset(dataset, CONFIG, DataConfig(cameras=("top",)), processor=single)
    with pytest.raises(ValueError, match=r"with fit 'stretch', the data config asks for 'letterbox'"):
        PolicyDataset(dataset, CONFIG, DataConfig(fit="letterbox"), processor=single)
    with pytest.raises(ValueError, match=r"the processor is for delta action dims \[0, 2\], the data config asks "
                                         r"for \[1\]"):
        PolicyDataset(dataset, CONFIG, DataConfig(delta_action_dims=(1,)), processor=samples.processor)
    wide = RobotProcessor(single.cameras, single.camera_sizes, "single", "letterbox",
                          Normalizer(torch.zeros(7), torch.ones(7), False), None)
    with pytest.raises(ValueError, match=r"the processor's state has 7 dims, embodiment 'sawyer' expects state_dim 4"):
        PolicyDataset(dataset, CONFIG, processor=wide)
    elsewhere = RobotProcessor(("wrist",), ((H, W),), "single", "letterbox", None, None)
    with pytest.raises(ValueError, match=r"camera 'wrist' does not exist"):
        PolicyDataset(dataset, CONFIG, processor=elsewhere)


def test_observations_that_do_not_fit_are_refused(samples):
    processor = samples.processor
    good = observation_at(samples.dataset, 0)
    with pytest.raises(ValueError, match=r"observation is missing camera\(s\) \['right'\]"):
        processor.preprocess(Observation({k: v for k, v in good.images.items() if k != "right"}, good.state, "t"),
                             CONFIG.image_size, 0)
    with pytest.raises(ValueError, match=r"state has shape \(7,\), the policy expects \(4,\)"):
        processor.preprocess(Observation(good.images, np.zeros(7), "t"), CONFIG.image_size, 0)
    with pytest.raises(ValueError, match=r"image 'top' must be \(H, W, 3\) uint8, got \(32, 48\)"):
        processor.preprocess(Observation({**good.images, "top": good.images["top"][..., 0]}, good.state, "t"),
                             CONFIG.image_size, 0)


def test_uint8_and_model_range_are_inverse():
    pixels = torch.randint(0, 256, (2, 5, 7, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    assert np.array_equal(to_uint8(to_model_range(pixels)), pixels.numpy())
    assert to_uint8(torch.tensor([-3.0, 1.5, 0.0]).reshape(3, 1, 1)).tolist() == [[[0, 255, 128]]]
