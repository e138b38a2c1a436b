"""JoJoGAN fine-tuning on tiny models: parity with the reference step, reproducibility, resume, errors."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from jojogan.config import FinetuneConfig
from jojogan.errors import JojoganError
from jojogan.finetune import (
    FinetuneDivergedError,
    ResumeState,
    accumulate_gradients,
    finetune,
    identity_loss,
    reference_features,
)
from jojogan.mixing import layer_latents, layer_styles, resolve_mask
from jojogan.stylegan2 import load_checkpoint
from jojogan.stylegan2.model import Generator

from factories import TINY_STYLE_DIM, tiny_discriminator, tiny_generator

SIZE = 128  # the smallest size whose discriminator has the blocks 1, 3, 4, 5 the loss reads


def _setup(refs: int = 2, seed: int = 0):
    gen = tiny_generator(SIZE, seed=seed)
    disc = tiny_discriminator(SIZE, seed=seed)
    rng = torch.Generator().manual_seed(seed + 100)
    w_plus = gen.to_w_plus(gen.get_latent(torch.randn(refs, TINY_STYLE_DIM, generator=rng))).detach()
    w_plus = w_plus + 0.2 * torch.randn(w_plus.shape, generator=rng)
    references = torch.tanh(torch.randn(refs, 3, SIZE, SIZE, generator=rng))
    return gen, disc, references, w_plus


def _run(config: FinetuneConfig, refs: int = 2, **kwargs):
    gen, disc, references, w_plus = _setup(refs)
    return finetune(gen, disc, references, w_plus, config, show_progress=False, **kwargs)


def _assert_same_weights(a: Generator, b: Generator, atol: float = 0.0):
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        torch.testing.assert_close(x, y, rtol=0, atol=atol, msg=name)


@torch.no_grad()
def _feature_loss(gen, disc, latents, references):
    fake = gen.synthesis_from_styles(layer_styles(gen, latents))
    feats = disc.features(fake, (1, 3, 4, 5))
    targets = disc.features(references, (1, 3, 4, 5))
    return sum(F.l1_loss(f, r) for f, r in zip(feats, targets, strict=True)) / 4


def test_one_step_matches_the_reference_implementation(shared, monkeypatch):
    """The fixture's JoJoGAN step (plain W+ code, fixed noise) through our loop with mix_strength 0."""
    path = shared("fixtures", "reference", "stylegan2_tiny256.pt")
    data = torch.load(path, weights_only=True)
    step = data["parity"]["finetune"]
    noise = data["parity"]["noise"]
    ckpt = load_checkpoint(path)
    config = FinetuneConfig(iterations=1, lr=step["lr"], betas=tuple(step["betas"]), mix_strength=0.0)
    monkeypatch.setattr(
        Generator, "make_noise", lambda self, batch=1, generator=None: [n.clone() for n in noise]
    )
    result = finetune(
        ckpt.generator, ckpt.discriminator, step["target"], step["w_plus"], config, show_progress=False
    )
    torch.testing.assert_close(torch.tensor(result.losses[0]), step["loss"], rtol=1e-4, atol=0)
    expected = step["g_after_one_step"]
    for name, value in result.generator.state_dict().items():
        if name.startswith("style."):
            # The fixture's mapping network moved too, so its w_plus must have been computed through the
            # mapping inside the autograd graph (its README describes a plain code). With an inverted code,
            # as in the original, the mapping gets no gradient from the reference code, only from the
            # random codes (none at mix_strength 0).
            assert torch.equal(value, ckpt.generator.state_dict()[name]), name
            continue
        scale = expected[name].abs().max().clamp_min(1e-12)
        assert (value - expected[name]).abs().max() / scale <= 1e-4, name


def test_loss_decreases_on_a_tiny_model():
    gen, disc, references, w_plus = _setup(refs=1)
    latents = layer_latents(w_plus, SIZE)
    before = _feature_loss(gen, disc, latents, references)
    result = finetune(gen, disc, references, w_plus, FinetuneConfig(iterations=8), show_progress=False)
    after = _feature_loss(result.generator, disc, latents, references)
    assert after < 0.8 * before
    assert sum(result.losses[-3:]) < sum(result.losses[:3])
    assert len(result.losses) == 8 and result.resumed_from == 0
    assert result.swapped_layers == list(range(10, 17))  # "default" at 128 px: W+ 7…11


def test_same_seed_same_run_and_base_models_untouched():
    gen, disc, references, w_plus = _setup()
    gen_before = {k: v.clone() for k, v in gen.state_dict().items()}
    disc_before = {k: v.clone() for k, v in disc.state_dict().items()}
    flags = [p.requires_grad for p in disc.parameters()]
    config = FinetuneConfig(iterations=3, seed=7)
    first = finetune(gen, disc, references, w_plus, config, show_progress=False)
    second = finetune(gen, disc, references, w_plus, config, show_progress=False)
    other = finetune(gen, disc, references, w_plus, dataclasses.replace(config, seed=8), show_progress=False)
    assert first.losses == second.losses
    _assert_same_weights(first.generator, second.generator)
    assert first.losses != other.losses
    for name, value in gen.state_dict().items():
        assert torch.equal(value, gen_before[name]), name
    for name, value in disc.state_dict().items():
        assert torch.equal(value, disc_before[name]), name
    assert [p.requires_grad for p in disc.parameters()] == flags
    assert all(p.grad is None for p in disc.parameters())
    # Every parameter trains: synthesis, affine modulations and the mapping network.
    changed = {n for n, p in first.generator.named_parameters() if not torch.equal(p, gen.get_parameter(n))}
    assert {"style.1.weight", "conv1.conv.modulation.weight", "to_rgbs.2.conv.weight"} <= changed
    assert not any(p.requires_grad for p in first.generator.parameters())


def test_micro_batches_give_the_full_batch_gradients():
    gen, disc, references, w_plus = _setup(refs=3)
    latents = layer_latents(w_plus, SIZE)
    keep = resolve_mask("default", SIZE)
    z = torch.randn(3, TINY_STYLE_DIM)
    noise = gen.make_noise(3)
    disc.requires_grad_(False)
    ref_features = reference_features(disc, references, (1, 3, 4, 5))
    grads, losses = [], []
    for micro_batch in (None, 1, 2):
        gen.zero_grad(set_to_none=True)
        loss = accumulate_gradients(
            gen, disc, latents, keep, 1.0, z, noise, ref_features, (1, 3, 4, 5), micro_batch=micro_batch
        )
        losses.append(loss)
        grads.append({n: p.grad.clone() for n, p in gen.named_parameters()})
    for other_loss, other in zip(losses[1:], grads[1:], strict=True):
        torch.testing.assert_close(other_loss, losses[0], rtol=1e-5, atol=0)
        for name, grad in grads[0].items():
            torch.testing.assert_close(other[name], grad, rtol=1e-5, atol=1e-7, msg=name)
    assert grads[0]["style.1.weight"].abs().sum() > 0


def test_micro_batch_does_not_change_the_run():
    # The full batch asked for explicitly: on the CPU the default is already one reference per pass.
    full = _run(FinetuneConfig(iterations=2, micro_batch=3), refs=3)
    micro = _run(FinetuneConfig(iterations=2, micro_batch=1), refs=3)
    torch.testing.assert_close(torch.tensor(micro.losses), torch.tensor(full.losses), rtol=1e-5, atol=0)


def test_resume_continues_exactly(tmp_path):
    straight = _run(FinetuneConfig(iterations=4))
    states = []
    _run(FinetuneConfig(iterations=2, save_state_every=2), on_resume_state=states.append)
    assert [s.step for s in states] == [2]
    # Through a file, as the API stores it: plain tensors and lists, loadable with weights_only.
    torch.save(states[0].to_dict(), tmp_path / "state.pt")
    state = ResumeState.from_dict(torch.load(tmp_path / "state.pt", weights_only=True))
    resumed = _run(FinetuneConfig(iterations=4), resume=state)
    torch.testing.assert_close(torch.tensor(resumed.losses), torch.tensor(straight.losses), rtol=1e-6, atol=0)
    _assert_same_weights(resumed.generator, straight.generator, atol=1e-6)
    assert len(resumed.losses) == 4 and resumed.resumed_from == 2


def test_resume_with_other_settings_is_refused():
    states = []
    _run(FinetuneConfig(iterations=1, save_state_every=1), on_resume_state=states.append)
    with pytest.raises(ValueError, match="mix_strength"):
        _run(FinetuneConfig(iterations=2, mix_strength=0.5), resume=states[0])


def test_nan_loss_stops_with_the_last_good_weights():
    gen, disc, references, w_plus = _setup()
    calls = []

    def poison(module, inputs, output):
        calls.append(1)
        # Call 1 computes the reference features, call 2 is step 1, call 3 is step 2.
        return output * float("nan") if len(calls) == 3 else output

    disc.convs[1].register_forward_hook(poison)
    config = FinetuneConfig(iterations=5, micro_batch=2)
    with pytest.raises(FinetuneDivergedError, match="step 2") as info:
        finetune(gen, disc, references, w_plus, config, show_progress=False)
    error = info.value
    assert isinstance(error, JojoganError)
    assert error.step == 2 and len(error.losses) == 1
    one_step = _run(FinetuneConfig(iterations=1, micro_batch=2))
    for name, value in one_step.generator.state_dict().items():
        assert torch.equal(error.last_good_state[name], value), name


def test_reference_features_are_computed_once():
    gen, disc, references, w_plus = _setup()
    batches = []
    disc.convs[0].register_forward_hook(lambda module, inputs, output: batches.append(inputs[0].shape[0]))
    finetune(gen, disc, references, w_plus, FinetuneConfig(iterations=3, micro_batch=2), show_progress=False)
    assert batches == [2, 2, 2, 2]  # the references once, then one batch of fakes per step


def test_callback_gets_losses_and_previews():
    seen = []
    result = _run(
        FinetuneConfig(iterations=4, preview_every=2),
        callback=lambda step, loss, preview: seen.append((step, loss, preview)),
    )
    assert [s for s, _, _ in seen] == [1, 2, 3, 4]
    assert [loss for _, loss, _ in seen] == result.losses
    assert seen[0][2] is None and seen[2][2] is None
    preview = seen[3][2]
    assert preview.shape == (2, 3, SIZE, SIZE) and preview.abs().max() <= 1
    # The last preview is the final generator's rendering of the reference codes.
    _, _, _, w_plus = _setup()
    with torch.no_grad():
        expected = result.generator.synthesis_from_styles(result.generator.styles(w_plus)).clamp(-1, 1)
    torch.testing.assert_close(preview, expected, rtol=0, atol=1e-5)


class _TinyFaceNet(torch.nn.Module):
    """Stand-in face-recognition net: a fixed random conv and global pooling → 8-d embeddings."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 5, stride=4)
        with torch.no_grad():
            self.conv.weight.copy_(
                torch.randn(self.conv.weight.shape, generator=torch.Generator().manual_seed(3))
            )
            self.conv.bias.fill_(0.1)

    def forward(self, images):
        return torch.tanh(self.conv(images)).mean((2, 3))


def test_identity_term_is_zero_for_the_original_and_changes_training():
    gen, disc, references, w_plus = _setup()
    net = _TinyFaceNet()
    with torch.no_grad():
        image = gen.synthesis(w_plus)
    assert abs(float(identity_loss(net, image, image).detach())) < 1e-6

    plain = _run(FinetuneConfig(iterations=3))
    with_id = _run(FinetuneConfig(iterations=3, identity_weight=5.0), identity_net=net)
    # Step 1 starts from the original weights: the identity term is 0 there.
    assert abs(plain.losses[0] - with_id.losses[0]) < 1e-5
    assert abs(plain.losses[2] - with_id.losses[2]) > 1e-4
    assert not torch.equal(
        plain.generator.get_parameter("to_rgbs.4.conv.weight"),
        with_id.generator.get_parameter("to_rgbs.4.conv.weight"),
    )
    assert all(p.grad is None for p in net.parameters()) and all(p.requires_grad for p in net.parameters())


def test_identity_term_changes_the_gradients_away_from_the_original():
    gen, disc, references, w_plus = _setup()
    moved = tiny_generator(SIZE, seed=0)
    with torch.no_grad():
        for p in moved.parameters():
            p.add_(0.05 * torch.randn_like(p))
    latents = layer_latents(w_plus, SIZE)
    keep = resolve_mask("default", SIZE)
    z, noise = torch.randn(2, TINY_STYLE_DIM), moved.make_noise(2)
    disc.requires_grad_(False)
    feats = reference_features(disc, references, (1, 3, 4, 5))
    grads = []
    for weight in (0.0, 1.0):
        moved.zero_grad(set_to_none=True)
        accumulate_gradients(
            moved, disc, latents, keep, 1.0, z, noise, feats, (1, 3, 4, 5),
            identity_net=_TinyFaceNet().requires_grad_(False), identity_weight=weight, original=gen,
        )  # fmt: skip
        grads.append(moved.get_parameter("convs.0.conv.weight").grad.clone())
    assert not torch.allclose(grads[0], grads[1], rtol=1e-4, atol=0)


def test_mean_and_blend_reference_codes_train():
    gen, disc, references, w_plus = _setup()
    mean = torch.randn(TINY_STYLE_DIM)
    by_mean = finetune(
        gen, disc, references, None, FinetuneConfig(iterations=2, reference_code="mean"),
        mean_latent=mean, show_progress=False,
    )  # fmt: skip
    blended = finetune(
        gen, disc, references, w_plus, FinetuneConfig(iterations=2, reference_code="blend"),
        mean_latent=mean, show_progress=False,
    )  # fmt: skip
    inverted = finetune(gen, disc, references, w_plus, FinetuneConfig(iterations=2), show_progress=False)
    assert len({by_mean.losses[0], blended.losses[0], inverted.losses[0]}) == 3
    # Without a given mean latent, it is computed from the base generator.
    config = FinetuneConfig(iterations=1, reference_code="mean", mean_code_samples=100)
    computed = finetune(gen, disc, references, None, config, show_progress=False)
    assert len(computed.losses) == 1


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"iterations": -1}, "iterations"),
        ({"lr": 0}, "lr"),
        ({"betas": (0.0, 1.0)}, "betas"),
        ({"mix_strength": 1.5}, "mix_strength"),
        ({"mask": "nope"}, "mask must be one of"),
        ({"mask": [1.5]}, "integers"),
        ({"micro_batch": 0}, "micro_batch"),
        ({"reference_code": "random"}, "reference_code"),
        ({"d_blocks": ()}, "d_blocks"),
        ({"identity_weight": -1.0}, "identity_weight"),
    ],
)
def test_config_validation(kwargs, message):
    with pytest.raises(ValueError, match=message):
        FinetuneConfig(**kwargs)


def test_config_is_frozen_and_copies_the_mask():
    swap = [10, 11]
    config = FinetuneConfig(mask=swap)
    swap.append(12)
    assert config.mask == (10, 11)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.iterations = 3  # type: ignore[misc]
    assert FinetuneConfig().betas == (0.0, 0.99) and FinetuneConfig().iterations == 300


def test_bad_inputs_are_refused():
    gen, disc, references, w_plus = _setup()
    with pytest.raises(ValueError, match=r"\[refs, 3, 128, 128\]"):
        finetune(gen, disc, references[:, :, :64, :64], w_plus, FinetuneConfig(iterations=1))
    with pytest.raises(ValueError, match="2 references but 1"):
        finetune(gen, disc, references, w_plus[:1], FinetuneConfig(iterations=1))
    with pytest.raises(ValueError, match="mask layer indices"):
        finetune(gen, disc, references, w_plus, FinetuneConfig(iterations=1, mask=[40]))
    with pytest.raises(ValueError, match="on_resume_state"):
        finetune(gen, disc, references, w_plus, FinetuneConfig(iterations=1, save_state_every=1))
    with pytest.raises(ValueError, match="identity_net"):
        finetune(gen, disc, references, w_plus, FinetuneConfig(iterations=1, identity_weight=1.0))
    with pytest.raises(ValueError, match="d_blocks"):
        finetune(gen, disc, references, w_plus, FinetuneConfig(iterations=1, d_blocks=(1, 6)))


def _spy_micro_batches(monkeypatch, fail_above: int | None = None) -> list[int]:
    """Record the micro-batch of every accumulate_gradients call; optionally fake running out of memory."""
    import jojogan.finetune as module

    seen: list[int] = []
    real = module.accumulate_gradients

    def spy(*args, micro_batch=None, **kwargs):
        seen.append(micro_batch)
        if fail_above is not None and micro_batch > fail_above:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(*args, micro_batch=micro_batch, **kwargs)

    monkeypatch.setattr(module, "accumulate_gradients", spy)
    return seen


def test_cpu_default_is_one_reference_per_pass(monkeypatch):
    seen = _spy_micro_batches(monkeypatch)
    _run(FinetuneConfig(iterations=2), refs=3)
    assert seen == [1, 1]


def test_out_of_memory_halves_the_automatic_micro_batch_with_the_same_result(monkeypatch, caplog):
    import jojogan.finetune as module

    expected = _run(FinetuneConfig(iterations=3, micro_batch=1), refs=4)
    monkeypatch.setattr(module, "default_micro_batch", lambda refs, device: refs)  # as on a GPU
    seen = _spy_micro_batches(monkeypatch, fail_above=1)
    with caplog.at_level("WARNING", logger="jojogan.finetune"):
        result = _run(FinetuneConfig(iterations=3), refs=4)
    assert seen == [4, 2, 1, 1, 1]  # halved within the first step, then kept
    assert "retrying the step with 2" in caplog.text
    torch.testing.assert_close(torch.tensor(result.losses), torch.tensor(expected.losses), rtol=1e-6, atol=0)
    _assert_same_weights(result.generator, expected.generator, atol=1e-5)


def test_out_of_memory_at_a_chosen_micro_batch_is_a_clear_error(monkeypatch):
    from jojogan.finetune import FinetuneOutOfMemoryError

    _spy_micro_batches(monkeypatch, fail_above=1)
    message = r"step 1 with 2 of 4 references per pass.*--micro-batch"
    with pytest.raises(FinetuneOutOfMemoryError, match=message):
        _run(FinetuneConfig(iterations=2, micro_batch=2), refs=4)


def test_finetune_adam_is_torchs_bit_for_bit_and_shares_its_resume_state():
    """The fine-tuning optimiser (``jojogan.op.optim.Adam``, which spares each process torch._dynamo) steps
    as ``torch.optim.Adam`` with the official settings, and its state dict loads into torch's and back:
    resume files written before and after it stay interchangeable."""
    from jojogan.op.optim import Adam

    config = FinetuneConfig()
    gen = torch.Generator().manual_seed(3)
    start = [torch.randn(4, 3, generator=gen), torch.randn(5, generator=gen), torch.randn(2, generator=gen)]
    grads = [[torch.randn_like(p, generator=gen) for p in start] for _ in range(5)]

    def run(make, steps, params=None, load=None):
        params = params or [p.clone().requires_grad_(True) for p in start]
        optimizer = make(params)
        if load is not None:
            optimizer.load_state_dict(load)
        for step in steps:
            optimizer.zero_grad(set_to_none=True)
            for i, (param, grad) in enumerate(zip(params, grads[step], strict=True)):
                param.grad = None if i == 2 and step < 2 else grad.clone()  # a late parameter's lazy state
            optimizer.step()
        return params, optimizer

    def ours(params):
        return Adam(params, lr=config.lr, betas=config.betas, fused=False)

    def torchs(params):
        return torch.optim.Adam(params, lr=config.lr, betas=config.betas, fused=False)

    mine, our_opt = run(ours, range(5))
    theirs, torch_opt = run(torchs, range(5))
    assert all(torch.equal(a, b) for a, b in zip(mine, theirs, strict=True))

    def same_state(a, b):
        assert a["param_groups"] == b["param_groups"]
        assert list(a["state"]) == list(b["state"])
        for i, values in a["state"].items():
            assert list(values) == list(b["state"][i])
            assert all(
                torch.equal(v, b["state"][i][k]) and v.dtype == b["state"][i][k].dtype
                for k, v in values.items()
            )

    same_state(our_opt.state_dict(), torch_opt.state_dict())
    # a resume after step 3, in both directions, ends where the uninterrupted run ends
    params, half = run(ours, range(3))
    saved = half.state_dict()
    resumed_in_torch, opt = run(
        torchs, range(3, 5), [p.detach().clone().requires_grad_(True) for p in params], saved
    )
    assert all(torch.equal(a, b) for a, b in zip(resumed_in_torch, theirs, strict=True))
    params, half = run(torchs, range(3))
    saved = half.state_dict()
    resumed_in_ours, opt = run(
        ours, range(3, 5), [p.detach().clone().requires_grad_(True) for p in params], saved
    )
    assert all(torch.equal(a, b) for a, b in zip(resumed_in_ours, mine, strict=True))
    same_state(opt.state_dict(), torch_opt.state_dict())
