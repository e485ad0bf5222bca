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
    gwp_cnn_expert gwp_cnn with a 64-wide action expert (a quarter of the small preset's width; FFN 256) for the
                   action tokens, sharing attention with the DiT at every layer (GigaWorld-Policy 0.5's design)
    prior_cnn      gwp_cnn post-trained from a shipped video prior (--prior, e.g. priors/metaworld-small: video-only
                   pre-training on other tasks) instead of from random weights: the paper's curriculum
    prior_baseline the baseline's recipe (action loss only) from that prior: the prior without video in
                   post-training
"""

# the variants a study runs unless told otherwise (the prior's need --prior)
DEFAULT_VARIANTS = ("gwp", "action_only", "shared_sigma", "pretrain", "baseline", "gwp_cnn", "pretrain_cnn",
                    "gwp_cnn_expert")
VARIANTS = (*DEFAULT_VARIANTS, "prior_cnn", "prior_baseline")
# TrainConfig fields each variant sets (the others train the preset as it is)
OVERRIDES = {"action_only": {"video_loss_weight": 0.0}, "shared_sigma": {"shared_flow_time": True},
             "baseline": {"video_loss_weight": 0.0, "observation_encoder": "cnn"},
             "gwp_cnn": {"observation_encoder": "cnn"}, "pretrain_cnn": {"observation_encoder": "cnn"},
             "gwp_cnn_expert": {"observation_encoder": "cnn", "action_expert_dim": 64},
             "prior_cnn": {"observation_encoder": "cnn"},
             "prior_baseline": {"video_loss_weight": 0.0, "observation_encoder": "cnn"}}
PRETRAINED = ("pretrain", "pretrain_cnn")  # variants with a video-only stage on the extra demonstrations first
FROM_PRIOR = ("prior_cnn", "prior_baseline")  # variants post-trained from the --prior checkpoint
# (with the video loss, without)
VIDEO_LOSS_PAIRS = (("gwp", "action_only"), ("gwp_cnn", "baseline"), ("prior_cnn", "prior_baseline"))
PRIOR_PAIRS = (("prior_cnn", "gwp_cnn"), ("prior_baseline", "baseline"))  # (from the prior, from scratch)
EXPERT_PAIRS = (("gwp_cnn_expert", "gwp_cnn"),)  # (with the action expert, without)


def trains_video(variant: str) -> bool:
    """Whether the variant trains the video loss (and so has a video head worth scoring)."""
    return OVERRIDES.get(variant, {}).get("video_loss_weight", 1.0) > 0
