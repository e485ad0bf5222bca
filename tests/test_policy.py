"""Behaviour of GigaWorldPolicy: causal structure, losses, samplers, checkpoints."""

import pytest
import torch

from gigaworld_policy import GigaWorldPolicy
from gigaworld_policy.model.layout import NUM_TIME_GROUPS, TIME_GROUP, TokenLayout


def _loss(policy, batch, seed=0):
    return policy.compute_loss(batch, generator=torch.Generator().manual_seed(seed))


def test_future_video_cannot_change_the_action_loss(tiny_policy):
    batch = tiny_policy.example_batch(3, seed=1)
    _, info = _loss(tiny_policy, batch)
    perturbed = {**batch, "future_images": torch.rand_like(batch["future_images"]) * 2 - 1}
    _, info_perturbed = _loss(tiny_policy, perturbed)
    assert abs(info["loss_action"] - info_perturbed["loss_action"]) <= 1e-6
    assert abs(info["loss_video"] - info_perturbed["loss_video"]) > 1e-3


def _hidden(policy, batch, action_tokens_fn=None, video_tokens_fn=None):
    """Hidden states of the full S,O,A,V sequence at fixed flow times (B, N, D) and its layout."""
    inputs = policy.prepare(batch)
    latents = policy.codec.encode(torch.cat([inputs.image[:, None], inputs.future_images], 1))
    actions = policy.action_encoder(inputs.actions, inputs.embodiment)
    video = policy.transformer.patchify(latents[:, :, 1:])
    if action_tokens_fn:
        actions = action_tokens_fn(actions)
    if video_tokens_fn:
        video = video_tokens_fn(video)
    layout = TokenLayout(1, policy.config.token_grid, policy.config.chunk_size, latents.shape[2] - 1)
    tokens = torch.cat([policy._prefix_tokens(inputs, latents[:, :, :1]), actions, video], 1)
    sigmas = torch.full((inputs.batch_size, NUM_TIME_GROUPS), 0.5)
    sigmas[:, TIME_GROUP["state"]] = 0
    hidden, _ = policy._transform(tokens, policy._plan(layout, slice(0, layout.num_tokens)), sigmas,
                                  policy._text(inputs))
    return hidden, layout


def test_perturbing_tokens_only_reaches_later_blocks(tiny_policy):
    batch = tiny_policy.example_batch(2, seed=2)
    with torch.no_grad():
        base, layout = _hidden(tiny_policy, batch)
        new_actions, _ = _hidden(tiny_policy, batch, action_tokens_fn=lambda t: t + torch.randn_like(t))
        new_video, _ = _hidden(tiny_policy, batch, video_tokens_fn=lambda t: t + torch.randn_like(t))
    prefix, actions, future = layout.span_of("state", "observation"), layout.span("action"), layout.span("future")
    assert torch.equal(new_actions[:, prefix], base[:, prefix])  # S,O never see the actions
    assert (new_actions[:, actions] - base[:, actions]).abs().max() > 1e-3
    assert (new_actions[:, future] - base[:, future]).abs().max() > 1e-3  # video is conditioned on actions
    assert torch.equal(new_video[:, : future.start], base[:, : future.start])  # nothing before V sees V


def test_cached_action_decoding_equals_uncached(tiny_policy):
    batch = tiny_policy.example_batch(3, seed=3)
    noise = torch.randn(3, 8, 14, generator=torch.Generator().manual_seed(0))
    cached = tiny_policy.sample_actions(batch, num_steps=5, noise=noise, use_cache=True)
    uncached = tiny_policy.sample_actions(batch, num_steps=5, noise=noise, use_cache=False)
    assert cached.shape == (3, 8, 14)
    assert (cached - uncached).abs().max() <= 1e-5
    assert (cached - noise).abs().max() > 1e-2  # the sampler moved away from the noise


def test_temperature_scales_the_start_noise_and_zero_is_deterministic(tiny_policy):
    batch = tiny_policy.example_batch(2, seed=3)
    noise = torch.randn(2, 8, 14, generator=torch.Generator().manual_seed(0))
    half = tiny_policy.sample_actions(batch, num_steps=3, noise=noise, temperature=0.5)
    assert torch.equal(half, tiny_policy.sample_actions(batch, num_steps=3, noise=0.5 * noise))
    first, second = (tiny_policy.sample_actions(batch, num_steps=3, temperature=0.0,
                                                generator=torch.Generator().manual_seed(seed)) for seed in (1, 2))
    assert torch.equal(first, second)  # no randomness left
    assert torch.equal(first, tiny_policy.sample_actions(batch, num_steps=3, noise=torch.zeros_like(noise)))
    sampled = [tiny_policy.sample_actions(batch, num_steps=3, generator=torch.Generator().manual_seed(seed))
               for seed in (1, 2)]
    assert (sampled[0] - sampled[1]).abs().max() > 1e-3  # at temperature 1 the start point matters
    for bad in (-0.1, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="temperature must be a finite number >= 0"):
            tiny_policy.sample_actions(batch, temperature=bad)


def test_cached_video_decoding_equals_uncached(tiny_policy):
    batch = tiny_policy.example_batch(2, seed=4)
    noise = torch.randn(2, 48, 2, 8, 8, generator=torch.Generator().manual_seed(0))
    cached = tiny_policy.sample_video(batch, batch["actions"], num_steps=3, noise=noise, use_cache=True)
    uncached = tiny_policy.sample_video(batch, batch["actions"], num_steps=3, noise=noise, use_cache=False)
    assert cached.shape == (2, 2, 3, 32, 32)
    assert (cached - uncached).abs().max() <= 1e-5
    other_actions = tiny_policy.sample_video(batch, -batch["actions"], num_steps=3, noise=noise)
    assert (other_actions - cached).abs().max() > 1e-4  # the video depends on the action chunk


def test_joint_sampler_shapes_and_action_dims(tiny_policy):
    batch = tiny_policy.example_batch(2, seed=5)
    batch["embodiment"] = torch.tensor([0, 0])  # both "sawyer": 4 action dims
    actions, future = tiny_policy.sample_joint(batch, num_steps=2)
    assert actions.shape == (2, 8, 4)
    assert future.shape == (2, 48, 2, 8, 8)


def test_smaller_embodiment_is_zero_beyond_its_dims(tiny_policy):
    batch = tiny_policy.example_batch(2, seed=6)
    batch["embodiment"] = torch.tensor([0, 1])  # 4 and 14 action dims
    actions = tiny_policy.sample_actions(batch, num_steps=2)
    assert actions.shape == (2, 8, 14)
    assert actions[0, :, 4:].abs().max() == 0
    assert actions[1, :, 4:].abs().max() > 0


def test_padded_actions_get_no_gradient(tiny_policy):
    batch = tiny_policy.example_batch(2, seed=7)
    batch["embodiment"] = torch.tensor([0, 1])
    batch["action_is_pad"] = torch.zeros(2, 8, dtype=torch.bool)
    batch["action_is_pad"][0, 5:] = True
    captured = {}

    def keep_output(module, args, output):
        output.retain_grad()
        captured["velocity"] = output

    handle = tiny_policy.action_decoder.register_forward_hook(keep_output)
    loss, _ = _loss(tiny_policy, batch)
    handle.remove()
    loss.backward()
    grad = captured["velocity"].grad.abs()
    assert grad[0, 5:].max() == 0  # padded steps
    assert grad[0, :, 4:].max() == 0  # dims a 4-dof robot does not have
    assert grad[0, :5, :4].min() > 0 and grad[1].min() > 0


def test_video_only_batch_trains(tiny_policy):
    batch = tiny_policy.example_batch(2, seed=8)
    for key in ("actions", "action_is_pad", "state"):
        batch.pop(key)
    tiny_policy.train()
    optimizer = torch.optim.Adam(tiny_policy.parameters(), lr=3e-3)
    losses = []
    for step in range(60):
        loss, info = _loss(tiny_policy, batch, seed=step % 3)
        assert info["loss_action"] == 0
        optimizer.zero_grad()
        loss.backward()
        assert all(p.grad is None for p in tiny_policy.action_encoder.parameters())
        optimizer.step()
        losses.append(loss.item())
    assert sum(losses[-3:]) < 0.7 * sum(losses[:3])


def test_action_only_weighting_drops_the_video_block(tiny_policy):
    policy = GigaWorldPolicy(tiny_policy.config.replace(video_loss_weight=0.0))
    policy.load_state_dict(tiny_policy.state_dict())
    batch = tiny_policy.example_batch(2, seed=9)
    loss, info = _loss(policy, batch)
    _, full_info = _loss(tiny_policy, batch)
    assert info["loss_video"] == 0 and torch.isclose(loss, info["loss_action"])
    assert abs(info["loss_action"] - full_info["loss_action"]) <= 1e-6  # V never mattered for the actions


def test_shared_or_independent_flow_time(tiny_policy):
    batch = tiny_policy.example_batch(4, seed=10)
    _, independent = _loss(tiny_policy, batch)
    shared_policy = GigaWorldPolicy(tiny_policy.config.replace(shared_flow_time=True))
    _, shared = _loss(shared_policy, batch)
    assert torch.equal(shared["sigma_action"], shared["sigma_video"])
    assert not torch.equal(independent["sigma_action"], independent["sigma_video"])


@pytest.mark.parametrize("shared_flow_time", [False, True])
def test_samples_given_their_clean_chunk_train_only_the_video(tiny_policy, shared_flow_time):
    config = tiny_policy.config.replace(clean_action_prob=0.5, shared_flow_time=shared_flow_time)
    policy = GigaWorldPolicy(config)
    policy.load_state_dict(tiny_policy.state_dict())
    batch = tiny_policy.example_batch(16, seed=11)
    _, info = _loss(policy, batch)
    given = info["sigma_action"] == 0
    assert 0 < given.sum() < 16  # flow time exactly 0 only for the samples given their chunk
    assert (info["sigma_video"][given] > 0).all()  # their future is still noised, also with one shared flow time

    everyone = GigaWorldPolicy(config.replace(clean_action_prob=0.999))
    everyone.load_state_dict(tiny_policy.state_dict())
    loss, info = _loss(everyone, tiny_policy.example_batch(4, seed=12))
    assert (info["sigma_action"] == 0).all() and info["loss_action"] == 0 and info["loss_video"] > 0
    loss.backward()
    assert all(p.grad is None or not p.grad.any() for p in everyone.action_decoder.parameters())
    assert any(p.grad is not None and p.grad.any() for p in everyone.action_encoder.parameters())  # V reads A


def _chunk_decides_the_future(policy, batch_size: int, generator: torch.Generator) -> dict:
    """A batch where nothing but the action chunk tells the future: blank observation, state and text, a chunk of
    constant dx = ±0.8 (the sign drawn per sample) and future frames of constant brightness 0.6 x that sign."""
    batch = policy.example_batch(batch_size, seed=int(torch.randint(10**6, (1,), generator=generator)))
    sign = torch.randint(0, 2, (batch_size,), generator=generator).float() * 2 - 1
    actions = torch.zeros_like(batch["actions"])
    actions[..., 0] = 0.8 * sign[:, None]
    future = (0.6 * sign)[:, None, None, None, None].expand_as(batch["future_images"])
    return {**batch, "actions": actions, "future_images": future.clone(), "image": torch.zeros_like(batch["image"]),
            "state": torch.zeros_like(batch["state"]), "text_embeds": torch.zeros_like(batch["text_embeds"]),
            "embodiment": torch.zeros(batch_size, dtype=torch.long),
            "action_is_pad": torch.zeros_like(batch["action_is_pad"])}


def test_the_video_learns_to_follow_the_action_chunk_when_only_the_chunk_decides_the_future(tiny_policy):
    """V reads A through the shared blocks: trained where the chunk alone decides the future, the decoded video
    brightens or darkens with the chunk it is given. A quarter of the samples train with their clean chunk, the
    condition `sample_video` decodes in."""
    torch.manual_seed(0)
    policy = GigaWorldPolicy(tiny_policy.config.replace(clean_action_prob=0.25))
    optimizer = torch.optim.AdamW(policy.parameters(), lr=1e-3)
    data = torch.Generator().manual_seed(1)
    for _ in range(600):
        loss, _ = policy.compute_loss(_chunk_decides_the_future(policy, 16, data))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    policy.eval()
    batch = _chunk_decides_the_future(policy, 8, torch.Generator().manual_seed(5))
    for sign in (1, -1):
        chunk = torch.zeros_like(batch["actions"])
        chunk[..., 0] = 0.8 * sign
        with torch.no_grad():
            video = policy.sample_video(batch, chunk, generator=torch.Generator().manual_seed(0))  # (B, F, 3, H, W)
        brightness = video.mean(dim=(1, 2, 3, 4))
        assert (sign * brightness > 0.25).all(), f"given dx = {0.8 * sign}: mean brightness {brightness.tolist()}"


def test_save_load_round_trip(tiny_policy, tmp_path):
    tiny_policy.save_pretrained(tmp_path / "ckpt")
    loaded = GigaWorldPolicy.from_pretrained(tmp_path / "ckpt")
    assert loaded.config == tiny_policy.config
    batch = tiny_policy.example_batch(2, seed=11)
    noise = torch.randn(2, 8, 14)
    assert torch.equal(loaded.sample_actions(batch, noise=noise), tiny_policy.sample_actions(batch, noise=noise))


def test_failed_save_keeps_the_previous_checkpoint(tiny_policy, tmp_path, monkeypatch):
    tiny_policy.save_pretrained(tmp_path / "ckpt")
    before = sorted(p.name for p in (tmp_path / "ckpt").iterdir())

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("gigaworld_policy.model.policy.save_tensors", crash)
    with pytest.raises(OSError):
        tiny_policy.save_pretrained(tmp_path / "ckpt")
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == before
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt"]  # no temporary folder left behind
    GigaWorldPolicy.from_pretrained(tmp_path / "ckpt")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda b: b.update(image=torch.zeros(2, 3, 16, 16)), r"\(B, 3, 32, 32\).*got \(2, 3, 16, 16\)"),
        (lambda b: b.update(state=torch.zeros(2, 15)), r"S <= max_state_dim 14.*got \(2, 15\)"),
        (lambda b: b["state"].__setitem__((0, 0), float("nan")), r"'state' contains NaN"),
        (lambda b: b.update(embodiment=torch.tensor([0, 2])), r"unknown embodiment id 2; expected 0..1"),
        (lambda b: b.update(actions=torch.zeros(2, 5, 4)), r"\(2, 8, A\).*got \(2, 5, 4\)"),
        (lambda b: b.update(image=b["image"] * 255), r"'image' must be in \[-1, 1\]"),
        (lambda b: b.pop("text_embeds"), r"'text_embeds' \(B, L, text_dim\) or 'task'"),
        (lambda b: b.update(task=["a", "b"], text_embeds=None), r"no text encoder"),
    ],
    ids=["image_size", "state_dim", "nan_state", "embodiment", "chunk", "image_range", "no_text", "no_encoder"],
)
def test_bad_input_names_expected_and_given(tiny_policy, change, message):
    batch = tiny_policy.example_batch(2, seed=12)
    change(batch)
    with pytest.raises(ValueError, match=message):
        tiny_policy.compute_loss(batch)


def test_gradient_checkpointing_gives_the_same_gradients(tiny_policy):
    batch = tiny_policy.example_batch(2, seed=13)
    grads = []
    for checkpointing in (False, True):
        tiny_policy.zero_grad()
        tiny_policy.transformer.gradient_checkpointing = checkpointing
        loss, _ = _loss(tiny_policy, batch)
        loss.backward()
        grads.append([p.grad.clone() for p in tiny_policy.parameters()])
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(*grads, strict=True))


def test_bfloat16_inference_tracks_float32(tiny_policy):
    batch = tiny_policy.example_batch(2, seed=14)
    noise = torch.randn(2, 8, 14, generator=torch.Generator().manual_seed(0))
    reference = tiny_policy.sample_actions(batch, noise=noise)
    half = GigaWorldPolicy(tiny_policy.config)
    half.load_state_dict(tiny_policy.state_dict())
    half = half.to(torch.bfloat16).eval()
    actions = half.sample_actions(batch, noise=noise)
    assert actions.dtype == torch.float32  # the ODE state stays float32
    assert (actions - reference).abs().mean() < 0.05 * reference.abs().mean()
    assert half.sample_video(batch, actions).shape == (2, 2, 3, 32, 32)


def test_compiled_blocks_give_the_same_actions(tiny_policy):
    batch = tiny_policy.example_batch(1, seed=15)
    noise = torch.randn(1, 8, 14, generator=torch.Generator().manual_seed(0))
    reference = tiny_policy.sample_actions(batch, noise=noise, num_steps=2)
    compiled = GigaWorldPolicy(tiny_policy.config)
    compiled.load_state_dict(tiny_policy.state_dict())
    compiled.eval().compile()
    assert torch.allclose(compiled.sample_actions(batch, noise=noise, num_steps=2), reference, atol=1e-5)


@pytest.mark.parametrize("use_cache", [True, False])
def test_flex_attention_backend_matches_sdpa(tiny_policy, use_cache):
    batch = tiny_policy.example_batch(2, seed=16)
    noise = torch.randn(2, 8, 14, generator=torch.Generator().manual_seed(0))
    reference = tiny_policy.sample_actions(batch, noise=noise, num_steps=2, use_cache=use_cache)
    tiny_policy.transformer.attention_backend = "flex"
    try:
        flex = tiny_policy.sample_actions(batch, noise=noise, num_steps=2, use_cache=use_cache)
        video = tiny_policy.sample_video(batch, reference, num_steps=2, noise=torch.zeros(2, 48, 2, 8, 8))
    finally:
        tiny_policy.transformer.attention_backend = "sdpa"
    assert (flex - reference).abs().max() <= 1e-5
    expected = tiny_policy.sample_video(batch, reference, num_steps=2, noise=torch.zeros(2, 48, 2, 8, 8))
    assert (video - expected).abs().max() <= 1e-5


def test_cnn_baseline_trains_and_samples(tiny_policy):
    baseline = GigaWorldPolicy(tiny_policy.config.replace(observation_encoder="cnn", video_loss_weight=0.0))
    batch = baseline.example_batch(2, seed=17)
    loss, info = _loss(baseline, batch)
    loss.backward()
    assert info["loss_video"] == 0 and all(p.grad is not None for p in baseline.image_encoder.parameters())
    noise = torch.randn(2, 8, 14, generator=torch.Generator().manual_seed(0))
    cached = baseline.sample_actions(batch, noise=noise, num_steps=3)
    assert torch.allclose(cached, baseline.sample_actions(batch, noise=noise, num_steps=3, use_cache=False),
                          atol=1e-5)
    changed = {**batch, "image": -batch["image"]}
    assert (baseline.sample_actions(changed, noise=noise, num_steps=3) - cached).abs().max() > 1e-4  # it looks


def test_cnn_stages_set_the_feature_stride(tiny_policy):
    """The tiny preset's tokens are 8 pixels: 3 stride-2 stages give the token grid itself; 4 give 16-pixel
    features that the pooling spreads over the grid. Either way the prefix has one token per grid cell."""
    image = tiny_policy.example_batch(1, seed=0)["image"]
    grid = tiny_policy.config.token_grid
    for widths, feature_grid in (((8, 16, 32), grid), ((8, 16, 32, 64), (grid[0] // 2, grid[1] // 2))):
        config = tiny_policy.config.replace(observation_encoder="cnn", cnn_widths=widths)
        encoder = GigaWorldPolicy(config).image_encoder
        assert encoder.features(image).shape[1:] == (widths[-1], *feature_grid)
        assert encoder(image).shape == (1, grid[0] * grid[1], config.transformer.inner_dim)


def test_cnn_observation_encoder_with_the_video_loss(tiny_policy):
    policy = GigaWorldPolicy(tiny_policy.config.replace(observation_encoder="cnn"))
    batch = policy.example_batch(2, seed=17)
    loss, info = _loss(policy, batch)
    loss.backward()
    assert info["loss_action"] > 0 and info["loss_video"] > 0
    assert all(p.grad is not None for p in policy.image_encoder.parameters())
    assert policy.transformer.patch_embedding.weight.grad.abs().sum() > 0  # the future frames are still patches
    perturbed = {**batch, "future_images": -batch["future_images"]}
    assert abs(_loss(policy, perturbed)[1]["loss_action"] - info["loss_action"]) <= 1e-6  # the future cannot leak
    assert policy.sample_video(batch, batch["actions"], num_steps=2).shape == batch["future_images"].shape
