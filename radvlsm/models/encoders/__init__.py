"""Pretrained backbones loaded offline: the LiteMedSAM image encoder and text towers."""

from radvlsm.models.encoders.image_encoder import ImageEncoder, TinyViTConfig, build_image_encoder, image_encoder_config
from radvlsm.models.encoders.text_encoder import TextEncoder, build_text_encoder

__all__ = [
    "ImageEncoder",
    "TextEncoder",
    "TinyViTConfig",
    "build_image_encoder",
    "build_text_encoder",
    "image_encoder_config",
]
