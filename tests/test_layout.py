import torch

from gigaworld_policy.model.layout import TokenLayout, make_attention_mask


def test_block_causal_mask_rules():
    layout = TokenLayout(num_state=1, grid=(1, 2), num_action=2, num_future_frames=1)
    s, o, a, v = (layout.span(b) for b in ("state", "observation", "action", "future"))
    mask = layout.attention_mask
    assert mask.shape == (7, 7)
    prefix = slice(s.start, o.stop)
    assert mask[prefix, prefix].all()  # S,O <-> S,O
    assert not mask[prefix, a].any() and not mask[prefix, v].any()
    assert mask[a, : a.stop].all() and not mask[a, v].any()  # A -> S,O,A only
    assert mask[v].all()  # V -> everything


def test_make_attention_mask_example():
    expected = torch.tensor([[1, 1, 0, 0], [1, 1, 0, 0], [1, 1, 1, 0], [1, 1, 1, 1]], dtype=torch.bool)
    assert torch.equal(make_attention_mask(torch.tensor([0, 0, 1, 2])), expected)


def test_absent_blocks_and_positions_do_not_depend_on_future_count():
    short = TokenLayout(num_state=1, grid=(2, 3), num_action=4, num_future_frames=0)
    long = TokenLayout(num_state=1, grid=(2, 3), num_action=4, num_future_frames=3)
    assert short.counts["future"] == 0 and long.counts["future"] == 18
    assert short.span("future") == slice(short.num_tokens, short.num_tokens)
    n = short.num_tokens
    assert torch.equal(short.positions, long.positions[:n])
    assert torch.equal(short.attention_mask, long.attention_mask[:n, :n])
    # future frame f sits at latent frame f + 1, on the observation's grid
    future = long.positions[long.span("future")]
    assert future[:, 0].tolist() == [1] * 6 + [2] * 6 + [3] * 6
    assert torch.equal(future[:6, 1:], long.positions[long.span("observation")][:, 1:])
    # state/action tokens carry a 1D index on all three axes
    actions = long.positions[long.span("action")]
    assert torch.equal(actions, torch.arange(4)[:, None].expand(4, 3))


def test_video_only_layout_has_no_action_tokens():
    layout = TokenLayout(num_state=0, grid=(2, 2), num_action=0, num_future_frames=2)
    assert layout.num_tokens == 4 + 8
    assert layout.attention_mask[layout.span("future")].all()
    assert not layout.attention_mask[layout.span("observation"), layout.span("future")].any()
