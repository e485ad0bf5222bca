"""Real-time chunking: a committed action prefix is clean context inside the action block, in training (the first
d ~ U{0..d_max} steps of some samples) and in decoding (`sample_actions(action_prefix=...)`)."""

import pytest
import torch

from gigaworld_policy import GigaWorldPolicy, PolicyConfig


def rtc_policy(**changes) -> GigaWorldPolicy:
    torch.manual_seed(0)
    return GigaWorldPolicy(PolicyConfig.preset("tiny").replace(**changes)).eval()


def loss(policy, batch, seed=0):
    return policy.compute_loss(batch, generator=torch.Generator().manual_seed(seed))


def test_no_committed_steps_train_exactly_as_without_real_time_chunking():
    batch = rtc_policy().example_batch(3, seed=1)
    plain, info = loss(rtc_policy(), batch)
    never_long, info_rtc = loss(rtc_policy(action_prefix_prob=1.0, max_action_prefix=0), batch)
    assert torch.equal(plain, never_long) and info_rtc["action_prefix_steps"].tolist() == [0, 0, 0]
    assert "action_prefix_steps" not in info


def test_committed_steps_are_context_not_targets():
    policy = rtc_policy(action_prefix_prob=1.0, max_action_prefix=7).train()
    batch = policy.example_batch(6, seed=2)
    batch["action_is_pad"] = torch.zeros_like(batch["action_is_pad"])
    outputs = []
    hook = policy.action_decoder.register_forward_hook(lambda m, args, out: outputs.append(out) or out.retain_grad())
    value, info = loss(policy, batch, seed=3)
    value.backward()
    hook.remove()
    gradient = outputs[0].grad.abs().sum(dim=-1)  # (B, H): how much each step's predicted velocity is learned
    steps = info["action_prefix_steps"]
    assert len(set(steps.tolist())) > 1  # several prefix lengths in one batch
    for row, d in zip(gradient, steps.tolist(), strict=True):
        assert torch.all(row[:d] == 0) and torch.all(row[d:] > 0)


def test_future_video_cannot_change_actions_with_a_committed_prefix():
    policy = rtc_policy(action_prefix_prob=1.0)
    batch = policy.example_batch(3, seed=4)
    _, info = loss(policy, batch)
    _, perturbed = loss(policy, {**batch, "future_images": torch.rand_like(batch["future_images"]) * 2 - 1})
    assert info["action_prefix_steps"].sum() > 0
    assert abs(info["loss_action"] - perturbed["loss_action"]) <= 1e-6
    assert abs(info["loss_video"] - perturbed["loss_video"]) > 1e-3


def test_a_prefix_is_kept_exactly_and_the_rest_continues_it():
    policy = rtc_policy(action_prefix_prob=0.5)
    batch = policy.example_batch(2, seed=5)
    noise = torch.randn(2, 8, 14, generator=torch.Generator().manual_seed(0))
    dims = policy.prepare(batch).action_dim_mask  # (B, 14): each sample's robot has its own action dims
    prefix = torch.randn(2, 2, 14, generator=torch.Generator().manual_seed(1)) * 0.3 * dims[:, None]
    plain = policy.sample_actions(batch, num_steps=4, noise=noise)
    continued = policy.sample_actions(batch, num_steps=4, noise=noise, action_prefix=prefix)
    assert torch.equal(continued[:, :2], prefix)
    assert (continued[:, 2:] - plain[:, 2:]).abs().max() > 1e-4  # the rest reads the prefix
    other = policy.sample_actions(batch, num_steps=4, noise=noise, action_prefix=prefix + 0.5)
    assert (other[:, 2:] - continued[:, 2:]).abs().max() > 1e-4
    uncached = policy.sample_actions(batch, num_steps=4, noise=noise, action_prefix=prefix, use_cache=False)
    assert torch.allclose(uncached, continued, atol=1e-5)
    empty = policy.sample_actions(batch, num_steps=4, noise=noise, action_prefix=prefix[:, :0])
    assert torch.equal(empty, plain)


def test_bad_prefixes_are_named():
    policy = rtc_policy()
    batch = policy.example_batch(2, seed=6)
    with pytest.raises(ValueError, match=r"action_prefix has 3 steps; this policy continues at most 2"):
        policy.sample_actions(batch, num_steps=2, action_prefix=torch.zeros(2, 3, 4))
    with pytest.raises(ValueError, match=r"action_prefix must be \(B=2, d, A <= 14\), got \(1, 2, 4\)"):
        policy.sample_actions(batch, num_steps=2, action_prefix=torch.zeros(1, 2, 4))
    with pytest.raises(ValueError, match="action_prefix contains NaN"):
        policy.sample_actions(batch, num_steps=2, action_prefix=torch.full((2, 1, 4), float("nan")))
    with pytest.raises(ValueError, match=r"max_action_prefix must be in \[0, chunk_size\) = \[0, 8\), got 8"):
        PolicyConfig.preset("tiny").replace(max_action_prefix=8)
