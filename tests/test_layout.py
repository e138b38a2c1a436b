"""The module names and shapes are the official checkpoints' contract (HOUSE_STYLE 4)."""

from __future__ import annotations

from jojogan.stylegan2 import Discriminator, Generator

from conftest import shared_path


def read_layout(name: str) -> list[tuple[str, tuple[int, ...]]]:
    path = shared_path("reference", "checkpoint-layouts", name)
    rows = []
    for line in path.read_text().splitlines():
        if line.strip():
            key, shape = line.split("\t")
            rows.append((key, tuple(int(v) for v in shape.strip("[]").split(",") if v.strip())))
    return rows


def layout_of(module) -> list[tuple[str, tuple[int, ...]]]:
    return [(k, tuple(v.shape)) for k, v in module.state_dict().items()]


def test_generator_state_dict_matches_official_g_ema():
    expected = read_layout("stylegan2-ffhq-config-f.g_ema.tsv")
    assert len(expected) == 171
    assert layout_of(Generator(1024, 512, 8, 2)) == expected


def test_discriminator_state_dict_matches_official_d():
    expected = read_layout("stylegan2-ffhq-config-f.d.tsv")
    assert layout_of(Discriminator(1024, 2)) == expected


def test_full_generator_has_26_style_layers_reading_18_latents():
    gen = Generator(1024, 512, 8, 2)
    assert gen.num_styles == 26
    assert gen.n_latent == 18
    assert gen.style_latent_index[:5] == [0, 1, 1, 2, 3]
    assert gen.style_latent_index[-3:] == [15, 16, 17]
    assert len(gen.modulated_convs()) == 26
