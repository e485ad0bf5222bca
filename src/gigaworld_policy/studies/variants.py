"""The variants of the learning study (benchmarks/learning.py): one network and budget, one change each.

    gwp            video + action losses, independent flow times, action-only decoding   (our default)
    action_only    action loss only (video_loss_weight 0): the ablation the paper's claim rests on
    shared_sigma   one flow time for actions and video (the paper's first model)
    pretrain       a video-only pre-training stage on extra demonstrations whose actions are withheld, then
                   post-training (the paper's stages)
    baseline       a standard flow-matching policy without video: the observation seen through a small CNN
                   (as in Diffusion Policy) instead of the codec's latent patches, action loss only
    gwp_cnn        the default with the baseline's CNN observation encoder: baseline + the video loss, so
                   the two differ only in the future-video supervision
    pretrain_cnn   gwp_cnn with the pretrain variant's video-only stage first
"""

VARIANTS = ("gwp", "action_only", "shared_sigma", "pretrain", "baseline", "gwp_cnn", "pretrain_cnn")
# TrainConfig fields each variant sets (the others train the preset as it is)
OVERRIDES = {"action_only": {"video_loss_weight": 0.0}, "shared_sigma": {"shared_flow_time": True},
             "baseline": {"video_loss_weight": 0.0, "observation_encoder": "cnn"},
             "gwp_cnn": {"observation_encoder": "cnn"}, "pretrain_cnn": {"observation_encoder": "cnn"}}
PRETRAINED = ("pretrain", "pretrain_cnn")  # variants with a video-only stage on the extra demonstrations first
VIDEO_LOSS_PAIRS = (("gwp", "action_only"), ("gwp_cnn", "baseline"))  # (with the video loss, without)


def trains_video(variant: str) -> bool:
    """Whether the variant trains the video loss (and so has a video head worth scoring)."""
    return OVERRIDES.get(variant, {}).get("video_loss_weight", 1.0) > 0
