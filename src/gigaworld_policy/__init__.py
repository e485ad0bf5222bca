"""GigaWorld-Policy: an action-centred world-action model on a Wan2.2 video diffusion transformer."""

from .config import ActionExpertConfig, CodecConfig, EmbodimentSpec, PolicyConfig, WanConfig
from .model.policy import GigaWorldPolicy
from .model.wan import WanTransformer

__all__ = ["ActionExpertConfig", "CodecConfig", "EmbodimentSpec", "GigaWorldPolicy", "PolicyConfig", "WanConfig",
           "WanTransformer"]
__version__ = "0.1.0"
