"""Stored instruction embeddings: what the text encoder gives, stored once; training on them loads no text encoder."""

import pytest
import torch
from helpers import write_dataset

from gigaworld_policy import PolicyConfig
from gigaworld_policy.cli import main
from gigaworld_policy.data import LeRobotDataset, PolicyDataset
from gigaworld_policy.data.text_embeddings import TextEmbeddingDataset
from gigaworld_policy.encoders.text import TextEncoder
from gigaworld_policy.train import TrainConfig, train


@pytest.fixture(scope="module")
def stored(tmp_path_factory):
    root = tmp_path_factory.mktemp("text")
    write_dataset(root / "data", lengths=(12, 10))  # two instructions, one per episode
    main(["precompute-text", "--dataset", str(root / "data"), "--out", str(root / "text"), "--preset", "tiny"])
    return root


def test_stored_embeddings_are_what_the_encoder_gives(stored):
    config = PolicyConfig.preset("tiny")
    dataset = LeRobotDataset(stored / "data")
    samples = TextEmbeddingDataset(PolicyDataset(dataset, config), dataset, stored / "text", config.text_len,
                                   config.transformer.text_dim)
    encoder = TextEncoder.minilm(max_length=config.text_len)
    for index in (0, len(samples) - 1):
        sample = samples[index]
        assert "task" not in sample
        embeds, mask = encoder([dataset.task_of(index)])
        assert torch.equal(sample["text_mask"], mask[0])
        torch.testing.assert_close(sample["text_embeds"], embeds[0], atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="other instructions or another text encoder"):
        TextEmbeddingDataset(PolicyDataset(dataset, config), dataset, stored / "text", 32, 384)


def test_training_on_stored_embeddings_never_loads_a_text_encoder(stored, tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("training loaded a text encoder")

    monkeypatch.setattr("gigaworld_policy.train.load_text_encoder", refuse)
    result = train(TrainConfig(dataset=(str(stored / "data"),), text_embeddings=(str(stored / "text"),),
                               preset="tiny", steps=2, batch_size=2, num_workers=0, log_with="none",
                               output_dir=str(tmp_path / "run")))
    assert result.policy.text_encoder is None and (result.checkpoint / "model.safetensors").is_file()
    with pytest.raises(ValueError, match="1 text embedding folders for 2 datasets"):
        TrainConfig(dataset=(str(stored / "data"),) * 2, text_embeddings=(str(stored / "text"),))
