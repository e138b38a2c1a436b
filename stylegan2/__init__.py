"""StyleGAN2 (config-f) generator and discriminator with the official checkpoint layout.

The package is lazy (:mod:`jojogan.op.lazy`): the settings read the model's constants from
:mod:`jojogan.stylegan2.config` in processes that never build a network, and the model would load torch
into them. The names below are imported on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from jojogan.op.lazy import make_lazy

# public name -> the module that owns it
_EXPORTS = {
    "StyleGAN2Checkpoint": "jojogan.stylegan2.checkpoint",
    "load_checkpoint": "jojogan.stylegan2.checkpoint",
    "read_weights_file": "jojogan.stylegan2.checkpoint",
    "D_FEATURE_BLOCKS": "jojogan.stylegan2.config",
    "MEAN_LATENT_SAMPLES": "jojogan.stylegan2.config",
    "GeneratorConfig": "jojogan.stylegan2.config",
    "StyleLayer": "jojogan.stylegan2.config",
    "default_channels": "jojogan.stylegan2.config",
    "num_latents": "jojogan.stylegan2.config",
    "num_style_layers": "jojogan.stylegan2.config",
    "style_layer_is_rgb": "jojogan.stylegan2.config",
    "style_layer_latent_index": "jojogan.stylegan2.config",
    "style_layer_resolution": "jojogan.stylegan2.config",
    "synthesis_plan": "jojogan.stylegan2.config",
    "Discriminator": "jojogan.stylegan2.model",
    "Generator": "jojogan.stylegan2.model",
}

__all__ = sorted(_EXPORTS)

make_lazy(__name__, _EXPORTS)


if TYPE_CHECKING:  # static analysers see the eager imports; a test pins them to _EXPORTS
    from jojogan.stylegan2.checkpoint import (  # noqa: F401
        StyleGAN2Checkpoint,
        load_checkpoint,
        read_weights_file,
    )
    from jojogan.stylegan2.config import (  # noqa: F401
        D_FEATURE_BLOCKS,
        MEAN_LATENT_SAMPLES,
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
    from jojogan.stylegan2.model import Discriminator, Generator  # noqa: F401
