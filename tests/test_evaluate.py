"""Open-loop metrics of evaluate.py."""

import dataclasses

import torch

from gigaworld_policy import GigaWorldPolicy
from gigaworld_policy.evaluate import open_loop


def test_static_video_baseline_is_the_error_of_repeating_the_current_frame(tiny_policy):
    batch = tiny_policy.example_batch(2, seed=0)
    image = batch["image"].clamp(-0.5, 0.5)  # room to brighten by 0.5 inside [-1, 1]
    frames = image[:, None].expand_as(batch["future_images"])
    still = {**batch, "image": image, "future_images": frames.clone()}
    assert open_loop(tiny_policy, still)[0]["video_mse_static"] == 0.0

    # the scene brightens by 0.5 in the first future frame; the second one is padding and must not count
    moved = {**still, "future_images": torch.stack([frames[:, 0] + 0.5, -frames[:, 1]], dim=1),
             "future_is_pad": torch.tensor([[False, True], [False, True]])}
    metrics, predicted = open_loop(tiny_policy, moved)
    assert abs(metrics["video_mse_static"] - 0.25) < 1e-6
    expected = ((predicted[:, 0] - moved["future_images"][:, 0]) ** 2).mean()
    assert abs(metrics["video_mse"] - float(expected)) < 1e-5


def test_a_policy_trained_without_video_is_scored_on_actions_only(tiny_policy):
    action_only = GigaWorldPolicy(dataclasses.replace(tiny_policy.config, video_loss_weight=0.0)).eval()
    action_only.load_state_dict(tiny_policy.state_dict())
    batch = tiny_policy.example_batch(2, seed=0)
    with_video, frames = open_loop(tiny_policy, batch, generator=torch.Generator().manual_seed(0))
    without_video, no_frames = open_loop(action_only, batch, generator=torch.Generator().manual_seed(0))
    assert frames is not None and no_frames is None
    assert "video_mse" in with_video and "video_mse" not in without_video
    # same weights, same noise: the actions and the repeat-the-current-frame bar are unchanged
    assert without_video["action_mse"] == with_video["action_mse"]
    assert without_video["video_mse_static"] == with_video["video_mse_static"]


def test_video_decoded_given_another_chunk_shows_whether_the_video_follows_the_actions(tiny_policy):
    batch = tiny_policy.example_batch(3, seed=4)
    metrics, _ = open_loop(tiny_policy, batch, generator=torch.Generator().manual_seed(0))
    assert abs(metrics["video_mse_other_actions"] - metrics["video_mse"]) > 1e-6  # this network reads the chunk

    same_chunks = {**batch, "actions": batch["actions"][:1].expand_as(batch["actions"]).clone(),
                   "embodiment": batch["embodiment"][:1].expand_as(batch["embodiment"]).clone()}
    metrics, _ = open_loop(tiny_policy, same_chunks, generator=torch.Generator().manual_seed(0))
    assert metrics["video_mse_other_actions"] == metrics["video_mse"]  # the same noise decoded twice

    single, _ = open_loop(tiny_policy, {k: v[:1] for k, v in batch.items()}, generator=torch.Generator().manual_seed(0))
    assert "video_mse" in single and "video_mse_other_actions" not in single  # no other sample to borrow from


def test_open_loop_samples_the_actions_at_the_given_temperature(tiny_policy):
    batch = tiny_policy.example_batch(2, seed=0)

    def metrics(temperature: float, seed: int) -> dict[str, float]:
        return open_loop(tiny_policy, batch, generator=torch.Generator().manual_seed(seed), temperature=temperature)[0]

    assert metrics(0.0, 0)["action_mse"] == metrics(0.0, 1)["action_mse"]  # one deterministic chunk
    assert metrics(1.0, 0)["action_mse"] != metrics(1.0, 1)["action_mse"]
    # the video is decoded from the true actions, with the same noise, whatever the action temperature
    assert metrics(0.0, 0)["video_mse"] == metrics(1.0, 0)["video_mse"]
