"""LoRA fine-tuning: only adapters and heads train and are saved, the base stays as it was, merged = adapted, resume is
exact, a wrong base is refused."""

import dataclasses
import json
from pathlib import Path

import pytest
import torch
from helpers import write_dataset
from safetensors.torch import load_file, save_file

from gigaworld_policy import GigaWorldPolicy, PolicyConfig
from gigaworld_policy.cli import main
from gigaworld_policy.model.lora import LORA_CONFIG, LORA_WEIGHTS, TRAINED_IN_FULL, merge_checkpoint
from gigaworld_policy.model.wan import WanTransformer
from gigaworld_policy.model.wan_weights import WEIGHTS
from gigaworld_policy.train import OptimConfig, TrainConfig, train


def write_wan_folder(folder: Path, seed: int = 0) -> dict[str, torch.Tensor]:
    """A random Wan transformer of the tiny preset's size in diffusers' folder layout; returns its weights."""
    torch.manual_seed(seed)
    transformer = WanTransformer.from_config(PolicyConfig.preset("tiny").transformer)
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps(dataclasses.asdict(transformer.config)))
    state = {k: v.contiguous() for k, v in transformer.state_dict().items()}
    save_file(state, str(folder / WEIGHTS))
    return state


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("lora")
    write_dataset(root / "data", lengths=(14, 12))
    return root, write_wan_folder(root / "wan")


def lora_config(root: Path, out: Path, **changes) -> TrainConfig:
    base = dict(dataset=(str(root / "data"),), preset="tiny", init_wan=str(root / "wan"), lora_rank=4, lora_alpha=8,
                steps=4, batch_size=2, num_workers=0, save_every=2, log_with="none",
                output_dir=str(out), optim=OptimConfig(lr=1e-2, warmup_steps=1))
    return TrainConfig(**{**base, **changes})


def test_lora_trains_and_saves_only_adapters_and_heads_on_an_unchanged_base(setup, tmp_path):
    root, wan = setup
    result = train(lora_config(root, tmp_path / "run"))
    folder = result.checkpoint
    assert not (folder / "model.safetensors").exists()
    stored = load_file(str(folder / LORA_WEIGHTS))
    assert set(load_file(str(folder / "ema.safetensors"))) == set(stored)
    assert all(".lora_" in k or k.split(".")[0] in TRAINED_IN_FULL for k in stored)
    assert sum(".lora_A." in k for k in stored) == 2 * 10  # 2 blocks x 10 projections
    heads = {k for k in GigaWorldPolicy(result.policy.config).state_dict() if k.split(".")[0] in TRAINED_IN_FULL}
    assert heads <= set(stored)
    recorded = json.loads((folder / LORA_CONFIG).read_text())
    assert recorded["rank"] == 4 and recorded["base"]["kind"] == "init_wan"
    assert Path(recorded["base"]["path"]) == (root / "wan").resolve()

    adapted = GigaWorldPolicy.from_pretrained(folder, merge_lora=False)
    base = {k.replace(".base_layer.", "."): v for k, v in adapted.transformer.state_dict().items() if ".lora_" not in k}
    assert base.keys() == wan.keys() and all(torch.equal(base[k], wan[k]) for k in wan)  # the base did not move
    assert any(float(v.abs().max()) > 0 for k, v in stored.items() if ".lora_B." in k)  # the adapters did
    trainable = {n for n, p in result.policy.named_parameters() if p.requires_grad}
    assert trainable == set(stored)


def test_the_merged_policy_acts_as_the_adapted_one_and_merge_writes_a_plain_checkpoint(setup, tmp_path):
    root, _ = setup
    folder = train(lora_config(root, tmp_path / "run", steps=2)).checkpoint
    adapted = GigaWorldPolicy.from_pretrained(folder, merge_lora=False)
    merged = GigaWorldPolicy.from_pretrained(folder)
    assert merged.lora is None and not any(".lora_" in k for k in merged.state_dict())
    batch = merged.example_batch(2)
    noise = torch.randn(2, merged.config.chunk_size, merged.config.max_action_dim)
    expected = adapted.sample_actions(batch, noise=noise)
    torch.testing.assert_close(merged.sample_actions(batch, noise=noise), expected, atol=1e-5, rtol=1e-5)
    with torch.no_grad():
        losses = [p.compute_loss(batch, torch.Generator().manual_seed(1))[0] for p in (adapted, merged)]
    torch.testing.assert_close(losses[0], losses[1], atol=1e-5, rtol=1e-5)

    main(["merge-lora", "--checkpoint", str(folder), "--out", str(tmp_path / "merged")])
    plain = tmp_path / "merged"
    assert {p.name for p in plain.iterdir()} >= {"config.json", "model.safetensors", "ema.safetensors"}
    reloaded = GigaWorldPolicy.from_pretrained(plain)
    assert all(torch.equal(v, merged.state_dict()[k]) for k, v in reloaded.state_dict().items())
    averaged = GigaWorldPolicy.from_pretrained(plain, ema=True)
    torch.testing.assert_close(averaged.sample_actions(batch, noise=noise),
                               GigaWorldPolicy.from_pretrained(folder, ema=True).sample_actions(batch, noise=noise))


def test_lora_resume_is_exact(setup, tmp_path):
    root, _ = setup
    straight = train(lora_config(root, tmp_path / "straight")).checkpoint
    optim = OptimConfig(lr=1e-2, warmup_steps=1, decay_steps=4)
    train(lora_config(root, tmp_path / "resumed", steps=2, optim=optim))
    resumed = train(lora_config(root, tmp_path / "resumed", resume=True, optim=optim)).checkpoint
    for name in (LORA_WEIGHTS, "ema.safetensors"):
        a, b = load_file(str(straight / name)), load_file(str(resumed / name))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name
    with pytest.raises(ValueError, match="--lora-rank 4, this run asks for 0"):
        train(lora_config(root, tmp_path / "resumed", resume=True, lora_rank=0, lora_alpha=None, steps=6))


def reset_accelerate_state():
    """accelerate keeps one process-wide state: a run in another precision needs it cleared."""
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=True)


def test_lora_on_a_policy_checkpoint_in_bf16_with_gradient_checkpointing(setup, tmp_path):
    root, _ = setup
    full = train(lora_config(root, tmp_path / "full", lora_rank=0, lora_alpha=None, steps=1)).checkpoint
    reset_accelerate_state()
    try:
        result = train(lora_config(root, tmp_path / "lora", init_wan=None, init=str(full), steps=2, ema_decay=0,
                                   mixed_precision="bf16", gradient_checkpointing=True))
    finally:
        reset_accelerate_state()
    frozen = {p.dtype for p in result.policy.parameters() if not p.requires_grad}
    trained = {p.dtype for p in result.policy.parameters() if p.requires_grad}
    assert frozen == {torch.bfloat16} and trained == {torch.float32}
    assert json.loads((result.checkpoint / LORA_CONFIG).read_text())["base"]["kind"] == "init"
    assert all(v.dtype == torch.float32 for v in load_file(str(result.checkpoint / LORA_WEIGHTS)).values())
    base = GigaWorldPolicy.from_pretrained(full).transformer.state_dict()
    adapted = GigaWorldPolicy.from_pretrained(result.checkpoint, merge_lora=False).transformer.state_dict()
    assert all(torch.equal(v, base[k.replace(".base_layer.", ".")]) for k, v in adapted.items() if ".lora_" not in k)


def test_adapters_on_a_policy_checkpoint_start_from_the_seed(setup, tmp_path):
    """Each process of a sharded run must draw the same adapters; any run must be repeatable."""
    root, _ = setup
    full = train(lora_config(root, tmp_path / "full", lora_rank=0, lora_alpha=None, steps=1)).checkpoint

    def adapters(name: str, seed: int) -> dict[str, torch.Tensor]:
        run = train(lora_config(root, tmp_path / name, init_wan=None, init=str(full), steps=1, seed=seed))
        return load_file(str(run.checkpoint / LORA_WEIGHTS))

    first, again, other = adapters("first", 0), adapters("again", 0), adapters("other", 1)
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert not all(torch.equal(first[k], other[k]) for k in first if ".lora_A." in k)


def test_a_lora_checkpoint_refuses_another_base_and_lora_needs_one(setup, tmp_path):
    root, _ = setup
    folder = train(lora_config(root, tmp_path / "run", steps=1)).checkpoint
    write_wan_folder(tmp_path / "other", seed=1)
    with pytest.raises(ValueError, match="fingerprint"):
        GigaWorldPolicy.from_pretrained(folder, lora_base=tmp_path / "other")
    with pytest.raises(ValueError, match="fingerprint"):
        merge_checkpoint(folder, tmp_path / "merged", base=tmp_path / "other")
    assert not (tmp_path / "merged").exists()
    with pytest.raises(ValueError, match="--init-wan"):
        lora_config(root, tmp_path / "none", init_wan=None)
    with pytest.raises(ValueError, match="merge it"):
        train(lora_config(root, tmp_path / "chain", init_wan=None, init=str(folder)))
