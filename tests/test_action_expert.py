"""The action expert (GigaWorld-Policy 0.5): action tokens through a narrower transformer that shares attention with
the Wan blocks. Causality, cache, Wan2.2 loading, shapes, and which weights a cached Euler step reads."""

import collections

import pytest
import torch
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten

from gigaworld_policy import EmbodimentSpec, GigaWorldPolicy, PolicyConfig
from gigaworld_policy.bench import step_weights, weights_per_step


def expert_policy(**changes) -> GigaWorldPolicy:
    torch.manual_seed(0)
    return GigaWorldPolicy(PolicyConfig.preset("tiny-expert").replace(**changes)).eval()


def loss(policy, batch, seed=0):
    return policy.compute_loss(batch, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("prefix_prob", [0.0, 1.0], ids=["plain", "committed_prefix"])
def test_future_video_cannot_change_the_actions(prefix_prob):
    policy = expert_policy(action_prefix_prob=prefix_prob)
    batch = policy.example_batch(3, seed=1)
    _, info = loss(policy, batch)
    _, perturbed = loss(policy, {**batch, "future_images": torch.rand_like(batch["future_images"]) * 2 - 1})
    assert abs(info["loss_action"] - perturbed["loss_action"]) <= 1e-6
    assert abs(info["loss_video"] - perturbed["loss_video"]) > 1e-4  # the perturbation is there to be seen
    _, other_actions = loss(policy, {**batch, "actions": -batch["actions"]})
    assert abs(info["loss_video"] - other_actions["loss_video"]) > 1e-4  # the video attends to the expert's tokens


def test_cached_decoding_equals_uncached():
    policy = expert_policy(action_prefix_prob=0.5)
    batch = policy.example_batch(3, seed=2)
    noise = torch.randn(3, 8, 14, generator=torch.Generator().manual_seed(0))
    cached = policy.sample_actions(batch, num_steps=4, noise=noise)
    assert (cached - policy.sample_actions(batch, num_steps=4, noise=noise, use_cache=False)).abs().max() <= 1e-5
    assert (cached - noise).abs().max() > 1e-2
    prefix = torch.randn(3, 2, 14, generator=torch.Generator().manual_seed(1)) * 0.3
    prefix = prefix * policy.prepare(batch).action_dim_mask[:, None]
    continued = policy.sample_actions(batch, num_steps=4, noise=noise, action_prefix=prefix)
    assert torch.equal(continued[:, :2], prefix) and (continued[:, 2:] - cached[:, 2:]).abs().max() > 1e-4
    uncached = policy.sample_actions(batch, num_steps=4, noise=noise, action_prefix=prefix, use_cache=False)
    assert (continued - uncached).abs().max() <= 1e-5

    video_noise = torch.randn(3, 48, 2, 8, 8, generator=torch.Generator().manual_seed(2))
    video = policy.sample_video(batch, batch["actions"], num_steps=2, noise=video_noise)
    uncached = policy.sample_video(batch, batch["actions"], num_steps=2, noise=video_noise, use_cache=False)
    assert (video - uncached).abs().max() <= 1e-5
    assert (policy.sample_video(batch, -batch["actions"], num_steps=2, noise=video_noise) - video).abs().max() > 1e-4
    actions, future = policy.sample_joint(batch, num_steps=2)
    assert actions.shape == (3, 8, 14) and future.shape == (3, 48, 2, 8, 8)


def test_parameters_and_shapes_are_as_configured():
    policy = expert_policy()
    wan, expert = policy.config.transformer, policy.config.action_expert  # 2 x 16 = 32 wide; expert 16, FFN 32
    d, inner, f = expert.dim, wan.inner_dim, expert.ffn_dim
    block = policy.action_expert.blocks[0]
    shapes = {name: tuple(p.shape) for name, p in block.named_parameters()}
    assert shapes["attn1.to_q.weight"] == shapes["attn1.to_k.weight"] == (inner, d)  # into Wan's head space
    assert shapes["attn1.to_out.0.weight"] == shapes["attn2.to_out.0.weight"] == (d, inner)
    assert shapes["ffn.net.0.proj.weight"] == (f, d) and shapes["scale_shift_table"] == (1, 6, d)
    assert not any(name.startswith(("attn2.to_k", "attn2.to_v")) for name in shapes)  # reads Wan's text keys
    per_block = (3 * (d * inner + inner) + inner * d + d + 2 * inner  # self-attention, q/k norms
                 + d * inner + inner + inner * d + d + inner  # cross-attention queries and output, q norm
                 + 2 * d  # cross-attention layer norm
                 + d * f + f + f * d + d + 6 * d)  # feed-forward, modulation table
    time = wan.freq_dim * d + d + d * d + d + d * 6 * d + 6 * d
    assert sum(p.numel() for p in policy.action_expert.parameters()) == wan.num_layers * per_block + time + 2 * d
    assert len(policy.action_expert.blocks) == wan.num_layers
    assert policy.action_encoder.layers[-1].weight.shape[-1] == policy.action_decoder.layers[0].weight.shape[1] == d
    plain = GigaWorldPolicy(PolicyConfig.preset("tiny"))
    assert {k: v.shape for k, v in plain.transformer.state_dict().items()} == {
        k: v.shape for k, v in policy.transformer.state_dict().items()}  # the visual part is the plain model's


def test_gwp05_is_wan22_with_a_1024_wide_expert():
    gwp0, gwp05 = weights_per_step("gwp0"), weights_per_step("gwp05")
    assert PolicyConfig.preset("gwp05").action_expert.dim == 1024
    assert gwp05["parameters"] == 5_827_821_920  # the figure README's preset table gives
    assert gwp0["step_bytes"] / gwp05["step_bytes"] > 5  # weights read per cached Euler step


class ParameterReads(TorchFunctionMode):
    """Counts, per parameter name, the torch calls that take the parameter's values (not its dtype or device)."""

    def __init__(self, policy):
        super().__init__()
        self.names = {id(p): name for name, p in policy.named_parameters()}
        self.counts = collections.Counter()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if getattr(func, "__name__", "") != "__get__":  # attribute reads (.device, .dtype) touch no weights
            self.counts.update(self.names[id(a)] for a in tree_flatten((args, kwargs))[0] if id(a) in self.names)
        return func(*args, **kwargs)


@pytest.mark.parametrize("preset", ["tiny", "tiny-expert"])
def test_a_cached_euler_step_reads_the_weights_step_weights_counts(preset):
    torch.manual_seed(0)
    one_robot = PolicyConfig.preset(preset).replace(embodiments=(EmbodimentSpec("arm", 4, 4),))
    policy = GigaWorldPolicy(one_robot).eval()
    batch = policy.example_batch(1)
    reads = []
    for steps in (1, 2):  # what the second call reads more is one Euler step
        with ParameterReads(policy) as counter:
            policy.sample_actions(batch, num_steps=steps)
        reads.append(counter.counts)
    per_step = set(reads[1] - reads[0])
    parameters = dict(policy.named_parameters())
    assert sum(parameters[name].numel() for name in per_step) == step_weights(policy)
    wan_blocks = {name for name in per_step if name.startswith("transformer.")}
    assert bool(wan_blocks) == (preset == "tiny")  # with the expert, no Wan weight at all


def test_wan22_weights_load_strictly_into_the_visual_part(tmp_path):
    diffusers = pytest.importorskip("diffusers")
    config = PolicyConfig.preset("tiny-expert")
    wan = config.transformer
    torch.manual_seed(1)
    reference = diffusers.WanTransformer3DModel(
        patch_size=wan.patch_size, num_attention_heads=wan.num_attention_heads,
        attention_head_dim=wan.attention_head_dim, in_channels=wan.in_channels, out_channels=wan.out_channels,
        text_dim=wan.text_dim, freq_dim=wan.freq_dim, ffn_dim=wan.ffn_dim, num_layers=wan.num_layers,
        cross_attn_norm=wan.cross_attn_norm, qk_norm=wan.qk_norm, eps=wan.eps, rope_max_seq_len=wan.rope_max_seq_len)
    reference.save_pretrained(tmp_path / "transformer")
    torch.manual_seed(0)
    policy = GigaWorldPolicy.from_wan(tmp_path / "transformer", config)
    loaded = policy.transformer.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in reference.state_dict().items())
    assert all(torch.equal(p, q) for p, q in zip(policy.action_expert.parameters(),
                                                 expert_policy().action_expert.parameters(), strict=True))
    policy.transformer.load_state_dict(reference.state_dict(), strict=True)  # nothing of the expert in Wan's part
    batch = policy.example_batch(2)
    assert torch.isfinite(policy.sample_actions(batch, num_steps=2)).all()


def test_checkpoints_and_configs_round_trip(tmp_path):
    for name in ("tiny-expert", "bench-expert", "gwp05"):
        config = PolicyConfig.preset(name)
        assert PolicyConfig.from_dict(config.to_dict()) == config
    old = PolicyConfig.preset("tiny").to_dict()
    del old["action_expert"]  # a config.json written before the expert existed
    assert PolicyConfig.from_dict(old).action_expert is None
    with pytest.raises(ValueError, match=r"unknown config field 'action_expert.width'"):
        PolicyConfig.from_dict({**old, "action_expert": {"width": 8}})

    policy = expert_policy()
    policy.save_pretrained(tmp_path / "ckpt")
    loaded = GigaWorldPolicy.from_pretrained(tmp_path / "ckpt")
    batch, noise = policy.example_batch(2), torch.randn(2, 8, 14)
    assert torch.equal(loaded.sample_actions(batch, 2, noise=noise), policy.sample_actions(batch, 2, noise=noise))


def test_gradient_checkpointing_and_flex_attention_give_the_same_results():
    policy = expert_policy().train()
    batch = policy.example_batch(2, seed=3)

    def gradients():
        policy.zero_grad()
        loss(policy, batch)[0].backward()
        return {n: p.grad.clone() for n, p in policy.named_parameters()}

    plain = gradients()
    policy.transformer.gradient_checkpointing = True  # one switch for both transformers
    for name, grad in gradients().items():
        assert torch.allclose(grad, plain[name], atol=1e-6), name
    policy.eval()
    noise = torch.randn(2, 8, 14, generator=torch.Generator().manual_seed(0))
    sdpa = [policy.sample_actions(batch, 2, noise=noise, use_cache=c) for c in (True, False)]
    policy.transformer.attention_backend = "flex"
    for use_cache, reference in zip((True, False), sdpa, strict=True):
        assert (policy.sample_actions(batch, 2, noise=noise, use_cache=use_cache) - reference).abs().max() <= 1e-5


def test_latency_benchmark_runs_with_the_expert():
    from gigaworld_policy.bench import format_latency, measure_latency

    result = measure_latency("tiny-expert", repeats=1)
    assert result["cached_vs_uncached_max_abs"] <= 1e-5
    assert result["step_parameters"] == weights_per_step("tiny-expert")["step_parameters"]
    assert result["step_parameters"] < weights_per_step("tiny")["step_parameters"]
    assert result["gflops_cached_step"] > 0 and "one cached Euler step" in format_latency(result)
