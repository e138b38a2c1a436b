"""The API pipeline on tiny models: one owner of the mean latent, its component registry, style cache
bound and the CPU memory policy at its edge."""

from __future__ import annotations

import pytest
import torch

from jojogan.api import JoJoGAN
from jojogan.config import FinetuneConfig
from jojogan.finetune import MEAN_LATENTS, finetune
from jojogan.imaging import from_pil, to_pil
from jojogan.style_file import save_style

from factories import tiny_discriminator, tiny_generator

SIZE = 128  # the smallest size whose discriminator has the blocks 1, 3, 4, 5 the loss reads


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """An official-layout checkpoint file and one 'aligned' face drawn by its generator."""
    root = tmp_path_factory.mktemp("pipeline")
    gen, disc = tiny_generator(SIZE, seed=3), tiny_discriminator(SIZE, seed=4)
    torch.save({"g_ema": gen.state_dict(), "d": disc.state_dict()}, root / "base.pt")
    with torch.no_grad():
        face = to_pil(gen(torch.randn(1, gen.style_dim, generator=torch.Generator().manual_seed(5)))[0])
    return root / "base.pt", face


@pytest.mark.parametrize("reference_code", ["mean", "blend"])
def test_api_and_low_level_train_the_same_weights_for_a_seed(base, reference_code):
    """Both entry points take the mean latent from one owner, seeded by config.seed (not by 0)."""
    path, face = base
    MEAN_LATENTS.clear()
    config = FinetuneConfig(iterations=1, seed=3, reference_code=reference_code, mean_code_samples=500)
    pipe = JoJoGAN.from_pretrained(base=path, device="cpu")
    crops = [pipe.align(face, aligned=True)]
    latents = (
        None
        if reference_code == "mean"
        else pipe.invert(crops, inversion="optimize", inversion_steps=3, seed=config.seed)
    )
    images = torch.cat([from_pil(c.image, SIZE) for c in crops])

    through_api = pipe.finetune([face], config, inversion="optimize", inversion_steps=3, aligned=True)
    assert len(MEAN_LATENTS) == 1  # the API's path went through the cache keyed by the file's sha256
    low_level = finetune(pipe.generator, pipe.discriminator, images, latents, config, show_progress=False)
    for name, value in low_level.generator.state_dict().items():
        assert torch.equal(through_api.generator.state_dict()[name], value), name
    assert through_api.losses == low_level.losses

    # the seed of the mean latent matters: a mean drawn with seed 0 trains other weights
    seed0_mean = pipe.generator.mean_latent(config.mean_code_samples, seed=0)[0]
    other = finetune(
        pipe.generator,
        pipe.discriminator,
        images,
        latents,
        config,
        mean_latent=seed0_mean,
        show_progress=False,
    )
    assert other.losses != low_level.losses


def test_style_files_record_the_config_and_the_run(base, tmp_path):
    path, face = base
    config = FinetuneConfig(iterations=1, seed=2, reference_code="mean", mean_code_samples=100)
    run = JoJoGAN.from_pretrained(base=path).finetune([face], config, aligned=True, show_progress=False)
    meta = run.metadata
    assert meta["seed"] == 2 and meta["iterations"] == 1 and meta["mean_code_samples"] == 100
    assert meta["reference_code"] == "mean" and meta["inversion"] is None  # no inversion was run
    assert meta["mask_spec"] == "default" and meta["mask"] == list(range(10, 17))
    assert meta["references"] == 1 and len(meta["losses"]) == 1
    assert meta["betas"] == [0.0, 0.99] and meta["d_blocks"] == [1, 3, 4, 5]


def test_components_registry_moves_every_model_and_the_style_cache_is_bounded(base, tmp_path):
    path, _ = base
    pipe = JoJoGAN.from_pretrained(base=path, max_styles=2)
    assert set(pipe.components) == {"generator", "discriminator"}
    styles = []
    for seed in range(3):
        styles.append(save_style(tmp_path / f"s{seed}.safetensors", tiny_generator(SIZE, seed=10 + seed), {}))
    loaded = [pipe.load_style(s) for s in styles]
    assert list(pipe._styles) == styles[1:]  # the least recently used one was dropped
    assert pipe.load_style(styles[2]) is loaded[2]  # a kept one is not reloaded
    assert pipe.load_style(styles[0]) is not loaded[0]  # a dropped one is read again

    pipe.to("meta")  # moves without copying data: shows every registered model is reached
    for module in pipe.modules():
        assert all(p.device.type == "meta" for p in module.parameters())
    assert len(list(pipe.modules())) == 2 + pipe.max_styles


def test_cpu_memory_policy_is_entered_at_the_api_edge_not_in_the_stage(base):
    from jojogan.op import memory

    path, face = base
    config = FinetuneConfig(iterations=1, reference_code="mean", mean_code_samples=100)
    pipe = JoJoGAN.from_pretrained(base=path)
    depths = []
    pipe.finetune(
        [face], config, aligned=True, show_progress=False, callback=lambda *a: depths.append(memory._depth)
    )
    expected = 1 if memory._glibc() is not None else 0
    assert depths == [expected]
    images = from_pil(pipe.align(face, aligned=True).image, SIZE)
    finetune(
        pipe.generator, pipe.discriminator, images, None, config, show_progress=False,
        callback=lambda *a: depths.append(memory._depth),
    )  # fmt: skip
    assert depths[-1] == 0 and memory._depth == 0
