"""Mixing presets by resolution band: the same spatial scales at every size, the official lists at 1024 px."""

from __future__ import annotations

import pytest

from jojogan.config import DEFAULT_SWAP_W_PLUS, PRESERVE_COLOR_SWAP_W_PLUS, FinetuneConfig
from jojogan.mixing import band_of, resolve_mask, style_resolutions, swapped_layers, w_plus_swap_layers
from jojogan.stylegan2.model import num_style_layers, style_layer_resolution

SIZES = [8, 16, 32, 64, 128, 256, 512, 1024]


def swapped(spec, size):
    return swapped_layers(resolve_mask(spec, size))


def test_bands_at_1024_are_karras_coarse_middle_fine():
    assert swapped("coarse", 1024) == [0, 1, 2, 3]  # 4 and 8 px, with the 4 px to-RGB (it reads W+ 1)
    assert swapped("middle", 1024) == [4, 5, 6, 7, 8, 9]
    assert swapped("fine", 1024) == list(range(10, 26)) == swapped("default", 1024)


@pytest.mark.parametrize("size", [64, 128, 256, 512, 1024])
def test_a_band_names_the_same_resolutions_at_every_size(size):
    resolution = style_layer_resolution(size)
    assert swapped("coarse", size) == [0, 1, 2, 3] and swapped("middle", size) == [4, 5, 6, 7, 8, 9]
    fine = swapped("fine", size)
    assert fine == list(range(10, num_style_layers(size))) == swapped("default", size)
    assert {resolution[k] for k in fine} == {
        2**i for i in range(5, size.bit_length())
    }  # 32 px to-RGB .. size
    bands = [band_of(res) for res in style_resolutions(size)]
    assert sorted(swapped("coarse", size) + swapped("middle", size) + fine) == list(range(len(bands)))


@pytest.mark.parametrize("size", SIZES)
def test_presets_are_the_original_lists_wherever_the_model_has_the_entries(size):
    """At 1024 px exactly the original code's W+ lists; below, the entries the model has (as the original's
    indices mean the same resolutions at every size)."""
    n_latent = max(i for i in range(18) if w_plus_swap_layers([i], size)) + 1
    for preset, official in (
        ("default", DEFAULT_SWAP_W_PLUS),
        ("preserve-color", PRESERVE_COLOR_SWAP_W_PLUS),
    ):
        expected = w_plus_swap_layers([i for i in official if i < n_latent], size)
        assert swapped(preset, size) == expected, preset


def test_preserve_color_at_1024_and_below():
    assert swapped("preserve-color", 1024) == [13, 14, 16, 17, 22, 23, 24, 25]
    assert swapped("preserve-color", 512) == [13, 14, 16, 17, 22]  # the 512 px to-RGB reads W+ 15
    assert swapped("preserve-color", 256) == [13, 14, 16, 17]
    assert swapped("preserve-color", 64) == [13]  # the 64 px to-RGB reads the 128 px up-sampling entry


def test_band_masks_are_finetune_settings():
    assert FinetuneConfig(mask="middle").mask == "middle"
    with pytest.raises(ValueError, match="coarse"):
        FinetuneConfig(mask="medium")
