"""The identity loss with a real recognizer keeps the fine-tuned generator's faces closer to the originals."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from jojogan.config import FinetuneConfig
from jojogan.finetune import finetune, identity_loss
from jojogan.identity import IdentityError, load_face_recognizer, load_identity_loss_network
from jojogan.imaging import from_pil
from jojogan.inversion.align import align_face

from factories import TINY_STYLE_DIM, tiny_discriminator, tiny_generator

SIZE = 128  # the smallest generator whose discriminator has the blocks 1, 3, 4, 5 the loss reads


def _mean_identity(recognizer, original, tuned, z, noise) -> float:
    """Mean cosine similarity between the two generators' images of the same codes and noise."""
    with torch.no_grad():
        before = original.synthesis(original.to_w_plus(original.get_latent(z)), noise)
        after = tuned.synthesis(tuned.to_w_plus(tuned.get_latent(z)), noise)
        return F.cosine_similarity(recognizer.embed(before), recognizer.embed(after)).mean().item()


def test_identity_loss_keeps_the_person_with_a_real_network(shared):
    recognizer = load_face_recognizer("mobilefacenet", shared("weights", "mobilefacenet.pt"))
    photo = shared("images", "jojogan", "test_input", "iu.jpeg")
    reference = from_pil(align_face(photo, SIZE).image)
    gen, disc = tiny_generator(SIZE, seed=0), tiny_discriminator(SIZE, seed=0)
    rng = torch.Generator().manual_seed(100)
    w_plus = gen.to_w_plus(gen.get_latent(torch.randn(1, TINY_STYLE_DIM, generator=rng))).detach()

    def run(weight: float):
        config = FinetuneConfig(iterations=3, identity_weight=weight, seed=0)
        net = recognizer.embed if weight > 0 else None
        return finetune(gen, disc, reference, w_plus, config, identity_net=net, show_progress=False)

    off, on = run(0.0), run(5.0)
    # Same seed, same codes and noise; at step 1 the tuned generator is still the original, so the identity
    # term is zero and both runs start from the same loss. They part afterwards.
    assert on.losses[0] == pytest.approx(off.losses[0], abs=1e-5)
    assert on.losses[-1] != off.losses[-1]
    z = torch.randn(6, TINY_STYLE_DIM, generator=torch.Generator().manual_seed(7))
    noise = gen.make_noise(6, generator=torch.Generator().manual_seed(8))
    kept_off = _mean_identity(recognizer, gen, off.generator, z, noise)
    kept_on = _mean_identity(recognizer, gen, on.generator, z, noise)
    # measured: 0.9935 without the loss, 0.9976 with it (the identity drift shrinks about 2.7 times)
    assert kept_on > kept_off
    assert 1 - kept_on < 0.7 * (1 - kept_off)


def test_embed_plugs_into_the_finetune_loss_hook(shared):
    recognizer = load_face_recognizer("mobilefacenet", shared("weights", "mobilefacenet.pt"))
    images = torch.rand(2, 3, SIZE, SIZE) * 2 - 1
    assert identity_loss(recognizer.embed, images, images).item() < 1e-6
    moved = (images + 0.5 * torch.randn(2, 3, SIZE, SIZE)).clamp(-1, 1).requires_grad_(True)
    loss = identity_loss(recognizer.embed, images, moved)
    loss.backward()
    assert loss.item() > 1e-3 and moved.grad.abs().sum() > 0


def test_the_loss_refuses_metric_only_networks(shared, tmp_path):
    with pytest.raises(IdentityError, match=r"dlib recognizer has no gradients.*mobilefacenet"):
        load_identity_loss_network("dlib")
    onnx_file = tmp_path / "w600k_r50.onnx"
    onnx_file.write_bytes(b"")
    with pytest.raises(IdentityError, match=r"arcface-w600k-r50 recognizer has no gradients"):
        load_identity_loss_network("arcface-w600k-r50", onnx_file)
    recognizer = load_identity_loss_network(str(shared("weights", "mobilefacenet.pt")))
    assert recognizer.name == "mobilefacenet" and recognizer.differentiable
