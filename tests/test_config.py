import warnings

import pytest

from gigaworld_policy import PolicyConfig


@pytest.mark.parametrize("name", ["tiny", "small", "small-chunk48", "gwp0", "bench"])
def test_presets_round_trip_through_json_dicts(name):
    config = PolicyConfig.preset(name)
    assert PolicyConfig.from_dict(config.to_dict()) == config


def test_bench_has_gwp0_token_counts():
    gwp0, bench = PolicyConfig.preset("gwp0"), PolicyConfig.preset("bench")
    assert gwp0.token_grid == bench.token_grid == (12, 10)  # 120 tokens per latent frame
    assert gwp0.num_future_latent_frames == bench.num_future_latent_frames == 1
    assert gwp0.chunk_size == bench.chunk_size == 48


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (dict(num_future_frames=4, future_stride=16), r"4 x 16 > chunk_size 48"),
        (dict(image_size=(100, 80)), r"image_size \(100, 80\).*divisible by.*\(8, 8\)"),
        (dict(max_action_dim=8), r"'aloha_agilex' has state/action dims 14/14, beyond the maximum 32/8"),
        (dict(cnn_widths=(32, 60)), r"cnn_widths must be one or more positive multiples of 8.*\(32, 60\)"),
        (dict(cnn_widths=()), r"cnn_widths must be one or more"),
        (dict(clean_action_prob=1.0), r"clean_action_prob must be in \[0, 1\), got 1.0"),
    ],
)
def test_bad_config_says_which_rule_broke(changes, message):
    with pytest.raises(ValueError, match=message):
        PolicyConfig.preset("bench").replace(**changes)


def test_unknown_preset():
    with pytest.raises(ValueError, match="unknown preset 'huge'"):
        PolicyConfig.preset("huge")


def test_training_warns_when_the_network_is_narrower_than_a_video_token():
    from gigaworld_policy.train import warn_if_too_narrow_for_video

    tiny = PolicyConfig.preset("tiny")  # 32 wide, tokens of 48 x 2 x 2 = 192 values
    with pytest.warns(UserWarning, match=r"32 wide, narrower than a video token \(192 values\)"):
        warn_if_too_narrow_for_video(tiny)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warn_if_too_narrow_for_video(tiny.replace(video_loss_weight=0.0))  # no video to learn
        warn_if_too_narrow_for_video(PolicyConfig.preset("small"))
        warn_if_too_narrow_for_video(PolicyConfig.preset("gwp0"))
