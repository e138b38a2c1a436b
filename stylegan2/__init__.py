"""StyleGAN2 (config-f) generator and discriminator with the official checkpoint layout."""

from jojogan.stylegan2.checkpoint import StyleGAN2Checkpoint, load_checkpoint, read_weights_file
from jojogan.stylegan2.config import (
    GeneratorConfig,
    StyleLayer,
    default_channels,
    num_latents,
    num_style_layers,
    style_layer_is_rgb,
    style_layer_latent_index,
    style_layer_resolution,
    synthesis_plan,
)
from jojogan.stylegan2.model import D_FEATURE_BLOCKS, MEAN_LATENT_SAMPLES, Discriminator, Generator

__all__ = [
    "D_FEATURE_BLOCKS",
    "MEAN_LATENT_SAMPLES",
    "Discriminator",
    "Generator",
    "GeneratorConfig",
    "StyleGAN2Checkpoint",
    "StyleLayer",
    "default_channels",
    "load_checkpoint",
    "num_latents",
    "num_style_layers",
    "read_weights_file",
    "style_layer_is_rgb",
    "style_layer_latent_index",
    "style_layer_resolution",
    "synthesis_plan",
]
