"""The Wan2.2 VAE codec: loads a diffusers folder, matches the original model, and drives the policy."""

import pytest
import torch
from diffusers import AutoencoderKLWan

from gigaworld_policy import CodecConfig, EmbodimentSpec, GigaWorldPolicy, PolicyConfig, WanConfig
from gigaworld_policy.encoders.wan_vae import WanVAECodec

Z = 4


@pytest.fixture(scope="module")
def vae_folder(tmp_path_factory):
    # Wan2.2's VAE layout (residual, 2x2 patchify, 16x spatial / 4x temporal), at a tiny width.
    torch.manual_seed(0)
    vae = AutoencoderKLWan(base_dim=8, decoder_base_dim=8, z_dim=Z, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
                           temperal_downsample=[False, True, True], is_residual=True, in_channels=12,
                           out_channels=12, patch_size=2, scale_factor_spatial=16, scale_factor_temporal=4,
                           latents_mean=[0.5, -0.2, 0.1, 0.0], latents_std=[2.0, 1.5, 0.5, 1.0])
    folder = tmp_path_factory.mktemp("vae") / "vae"
    vae.save_pretrained(folder)
    return folder


def test_codec_matches_the_original_vae(vae_folder):
    original = AutoencoderKLWan.from_pretrained(str(vae_folder)).eval()
    codec = WanVAECodec.from_pretrained(vae_folder)
    assert all(torch.equal(a, b) for a, b in zip(original.state_dict().values(), codec.vae.state_dict().values(),
                                                  strict=True))
    frames = torch.rand(1, 5, 3, 32, 32) * 2 - 1  # the current frame + 4 future frames
    latents = codec.encode(frames)
    assert latents.shape == (1, Z, 2, 2, 2)  # 4 future frames -> 1 latent frame; 16x smaller
    with torch.no_grad():
        raw = original.encode(frames.transpose(1, 2)).latent_dist.mode()
        mean, std = torch.tensor([0.5, -0.2, 0.1, 0.0]), torch.tensor([2.0, 1.5, 0.5, 1.0])
        assert torch.allclose(latents, (raw - mean[:, None, None, None]) / std[:, None, None, None], atol=1e-5)
        decoded = codec.decode(latents)
        expected = original.decode(raw).sample.clamp(-1, 1).transpose(1, 2)
    assert decoded.shape == (1, 5, 3, 32, 32) and torch.allclose(decoded, expected, atol=1e-5)
    with pytest.raises(ValueError, match="encodes 1 \\+ 4k frames, got 3"):
        codec.encode(frames[:, :3])


def test_policy_trains_and_decodes_video_through_the_vae(vae_folder):
    config = PolicyConfig(
        transformer=WanConfig(num_attention_heads=2, attention_head_dim=12, in_channels=Z, out_channels=Z,
                              text_dim=16, freq_dim=32, ffn_dim=32, num_layers=2, rope_max_seq_len=64),
        codec=CodecConfig("wan_vae", spatial_factor=16, temporal_factor=4, latent_channels=Z),
        embodiments=(EmbodimentSpec("arm", 4, 4),), max_state_dim=4, max_action_dim=4, projector_hidden_dims=(16,),
        image_size=(64, 64), text_len=4, chunk_size=8, num_future_frames=4, future_stride=2, num_inference_steps=2,
    )
    policy = GigaWorldPolicy(config)
    batch = policy.example_batch(2)
    with pytest.raises(ValueError, match="codec is not attached"):
        policy.compute_loss(batch)
    policy.codec = WanVAECodec.from_pretrained(vae_folder)
    assert not any("vae" in key for key in policy.state_dict())  # frozen: never in checkpoints
    loss, info = policy.compute_loss(batch)
    loss.backward()
    assert info["loss_video"] > 0 and info["loss_action"] > 0
    actions = policy.sample_actions(batch)
    assert actions.shape == (2, 8, 4)
    assert policy.sample_video(batch, actions).shape == (2, 4, 3, 64, 64)
