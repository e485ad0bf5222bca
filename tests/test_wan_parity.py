"""Our WanTransformer against diffusers' WanTransformer3DModel: same parameters, same outputs."""

import json

import pytest
import torch
from diffusers import WanTransformer3DModel

from gigaworld_policy import GigaWorldPolicy, PolicyConfig, WanConfig, WanTransformer

TINY_WAN = dict(
    patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12, in_channels=4, out_channels=4, text_dim=16,
    freq_dim=32, ffn_dim=32, num_layers=2, cross_attn_norm=True, qk_norm="rms_norm_across_heads", eps=1e-6,
    rope_max_seq_len=32,
)

# diffusers' config of Wan2.2-TI2V-5B (Wan-AI/Wan2.2-TI2V-5B-Diffusers, transformer/config.json).
WAN22_TI2V_5B = dict(
    patch_size=(1, 2, 2), num_attention_heads=24, attention_head_dim=128, in_channels=48, out_channels=48,
    text_dim=4096, freq_dim=256, ffn_dim=14336, num_layers=30, cross_attn_norm=True,
    qk_norm="rms_norm_across_heads", eps=1e-6, image_dim=None, added_kv_proj_dim=None, rope_max_seq_len=1024,
    pos_embed_seq_len=None,
)


@pytest.fixture(params=[True, False], ids=["cross_attn_norm", "no_cross_attn_norm"])
def pair(request):
    kwargs = {**TINY_WAN, "cross_attn_norm": request.param}
    torch.manual_seed(0)
    reference = WanTransformer3DModel(**kwargs).eval()
    with torch.no_grad():  # norm weights start at 1 and biases at 0: move every parameter off its init
        for parameter in reference.parameters():
            parameter.add_(0.1 * torch.randn_like(parameter))
    ours = WanTransformer(**kwargs).eval()
    ours.load_state_dict(reference.state_dict(), strict=True)
    return reference, ours


def test_state_dict_keys_and_shapes_match_diffusers(pair):
    reference, ours = pair
    ref_shapes = {k: tuple(v.shape) for k, v in reference.state_dict().items()}
    our_shapes = {k: tuple(v.shape) for k, v in ours.state_dict().items()}
    assert our_shapes == ref_shapes


@pytest.mark.parametrize("per_token", [False, True], ids=["scalar_timestep", "per_token_timestep"])
def test_video_forward_matches_diffusers(pair, per_token):
    reference, ours = pair
    g = torch.Generator().manual_seed(1)
    video = torch.randn(2, 4, 3, 8, 6, generator=g)  # (B, C, F, H, W) -> 3 x 4 x 3 tokens
    text = torch.randn(2, 5, 16, generator=g)
    timestep = torch.rand(2, 36, generator=g) * 1000 if per_token else torch.tensor([120.0, 870.0])
    with torch.no_grad():
        expected = reference(video, timestep, text).sample
        got = ours(video, timestep, text)
    assert got.shape == expected.shape
    assert (got - expected).abs().max() < 1e-4
    assert expected.abs().max() > 0.1  # a non-trivial output, so the comparison means something


def test_gwp0_transformer_is_wan22_ti2v_5b():
    with torch.device("meta"):
        reference = WanTransformer3DModel(**WAN22_TI2V_5B)
        policy = GigaWorldPolicy(PolicyConfig.preset("gwp0"))
    ref_shapes = {k: tuple(v.shape) for k, v in reference.state_dict().items()}
    our_shapes = {k: tuple(v.shape) for k, v in policy.transformer.state_dict().items()}
    assert our_shapes == ref_shapes
    num_params = sum(p.numel() for p in policy.transformer.parameters())
    assert 4.9e9 < num_params < 5.1e9, num_params


@pytest.mark.parametrize("shard", [False, True], ids=["single_file", "sharded"])
def test_from_wan_loads_a_diffusers_folder(tmp_path, shard):
    kwargs = {**TINY_WAN, "in_channels": 48, "out_channels": 48, "rope_max_seq_len": 64}
    torch.manual_seed(0)
    reference = WanTransformer3DModel(**kwargs).eval()
    reference.save_pretrained(tmp_path / "transformer", max_shard_size="20KB" if shard else "10GB")
    assert any(p.name.endswith(".index.json") for p in (tmp_path / "transformer").iterdir()) == shard
    policy = GigaWorldPolicy.from_wan(tmp_path / "transformer")
    assert policy.config.chunk_size == 48 and policy.config.transformer.num_layers == 2  # gwp0 + folder dims
    g = torch.Generator().manual_seed(1)
    video, text = torch.randn(1, 48, 2, 4, 4, generator=g), torch.randn(1, 5, 16, generator=g)
    with torch.no_grad():
        assert (policy.transformer(video, torch.tensor([500.0]), text)
                - reference(video, torch.tensor([500.0]), text).sample).abs().max() < 1e-5


def test_from_wan_names_a_wrong_shaped_key(tmp_path):
    from safetensors.torch import load_file, save_file

    kwargs = {**TINY_WAN, "in_channels": 48, "out_channels": 48, "rope_max_seq_len": 64}
    WanTransformer3DModel(**kwargs).save_pretrained(tmp_path / "transformer")
    path = tmp_path / "transformer" / "diffusion_pytorch_model.safetensors"
    state = load_file(str(path))
    state["blocks.1.attn1.to_q.weight"] = torch.zeros(3, 3)
    save_file(state, str(path))
    with pytest.raises(ValueError, match=r"'blocks.1.attn1.to_q.weight' has shape \(3, 3\).*expects \(24, 24\)"):
        GigaWorldPolicy.from_wan(tmp_path / "transformer")


def test_original_wan_layout_converts_like_diffusers_own_converter(tmp_path):
    from diffusers.loaders.single_file_utils import convert_wan_transformer_to_diffusers
    from safetensors.torch import save_file

    from gigaworld_policy.model.wan_weights import from_original, to_original

    kwargs = {**TINY_WAN, "in_channels": 48, "out_channels": 48, "rope_max_seq_len": 64}
    torch.manual_seed(0)
    reference = WanTransformer3DModel(**kwargs).eval()
    diffusers_state = reference.state_dict()
    original = to_original(diffusers_state)
    assert "blocks.0.norm3.weight" in original and "head.head.weight" in original and "blocks.1.modulation" in original
    # diffusers' own converter (an independent implementation) maps our original layout back exactly
    converted = convert_wan_transformer_to_diffusers(dict(original))
    assert converted.keys() == diffusers_state.keys()
    assert all(torch.equal(converted[k], diffusers_state[k]) for k in diffusers_state)
    back = from_original({f"model.diffusion_model.{k}": v for k, v in original.items()})
    assert all(torch.equal(back[k], diffusers_state[k]) for k in diffusers_state)

    # an original-release folder (WanModel config.json + original names) loads through from_wan
    folder = tmp_path / "Wan2.2-original"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({
        "_class_name": "WanModel", "dim": 24, "num_heads": 2, "ffn_dim": 32, "freq_dim": 32, "in_dim": 48,
        "out_dim": 48, "num_layers": 2, "eps": 1e-6, "text_dim": 16}))
    save_file({k: v.contiguous() for k, v in original.items()}, str(folder / "diffusion_pytorch_model.safetensors"))
    policy = GigaWorldPolicy.from_wan(folder)
    assert policy.config.transformer == WanConfig(**{**kwargs, "rope_max_seq_len": 1024})
    loaded = policy.transformer.state_dict()
    assert all(torch.equal(loaded[k], diffusers_state[k]) for k in diffusers_state)
