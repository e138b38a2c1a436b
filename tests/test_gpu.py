"""The GPU levers of fine-tuning: precision settings, one host read per step, the fused optimiser, and the
specialised upfirdn2d kernel. CPU tests check the settings' logic; CUDA tests check the numbers."""

from __future__ import annotations

import math

import pytest
import torch

from jojogan.config import FinetuneConfig
from jojogan.finetune import _loss_and_health, finetune
from jojogan.op import precision as precision_module
from jojogan.op.fused_act import fused_leaky_relu_ref
from jojogan.op.precision import PRECISIONS, autocast, precision_scope, resolve_precision
from jojogan.op.upfirdn2d import make_kernel, upfirdn2d_ref

from factories import tiny_discriminator, tiny_generator

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


# --------------------------------------------------------------------------------------------------
# Settings (any machine)
# --------------------------------------------------------------------------------------------------


def test_precision_names_and_auto():
    assert PRECISIONS == ("auto", "fp32", "tf32", "bf16")
    assert resolve_precision("auto", "cpu") == "fp32"
    assert resolve_precision("auto", "cuda") == precision_module.AUTO_PRECISION["cuda"]
    assert resolve_precision("bf16", "cpu") == "bf16"
    with pytest.raises(ValueError, match="precision must be one of auto, fp32, tf32, bf16, got 'fp16'"):
        resolve_precision("fp16", "cpu")
    with pytest.raises(ValueError, match="precision must be one of"):
        FinetuneConfig(precision="half")
    assert FinetuneConfig().precision == "auto"


def test_precision_scope_on_cpu_changes_no_global_switch():
    before = (
        torch.backends.cudnn.benchmark,
        torch.backends.cudnn.allow_tf32,
        torch.backends.cuda.matmul.allow_tf32,
    )
    with precision_scope("tf32", "cpu") as resolved:
        assert resolved == "tf32"
        assert (
            torch.backends.cudnn.benchmark,
            torch.backends.cudnn.allow_tf32,
            torch.backends.cuda.matmul.allow_tf32,
        ) == before


def test_autocast_is_bf16_only_for_bf16():
    x = torch.randn(2, 3)
    with autocast("bf16", "cpu"):
        assert torch.mm(x, x.T).dtype == torch.bfloat16
    with autocast("fp32", "cpu"):
        assert torch.mm(x, x.T).dtype == torch.float32


def test_loss_and_health_reads_loss_and_gradient_finiteness():
    params = [torch.zeros(3, requires_grad=True), torch.zeros(2, requires_grad=True), torch.zeros(1)]
    params[0].grad = torch.tensor([1.0, 2.0, 3.0])
    params[1].grad = torch.tensor([0.5, -1.0])
    assert _loss_and_health(torch.tensor(0.25), params) == (0.25, True)
    params[1].grad = torch.tensor([0.5, math.nan])
    assert _loss_and_health(torch.tensor(0.25), params) == (0.25, False)
    params[1].grad = torch.tensor([math.inf, 0.0])
    value, finite = _loss_and_health(torch.tensor(math.nan), params)
    assert math.isnan(value) and not finite
    assert _loss_and_health(torch.tensor(1.5), [torch.zeros(2)]) == (1.5, True)


def _tiny_run(precision: str, device: str = "cpu", iterations: int = 3):
    torch.manual_seed(0)  # mean_latent draws from the global generator
    gen = tiny_generator(128).to(device)
    disc = tiny_discriminator(128).to(device)
    refs = (torch.rand(2, 3, 128, 128, generator=torch.Generator().manual_seed(1)) * 2 - 1).to(device)
    latents = gen.mean_latent(64).unsqueeze(1).repeat(2, gen.n_latent, 1)
    config = FinetuneConfig(iterations=iterations, seed=0, precision=precision)
    return finetune(gen, disc, refs, latents, config, show_progress=False, device=device)


def test_fp32_precision_is_the_cpu_default_bit_for_bit():
    auto, fp32 = _tiny_run("auto"), _tiny_run("fp32")
    assert auto.losses == fp32.losses
    for name, value in auto.generator.state_dict().items():
        assert torch.equal(value, fp32.generator.state_dict()[name]), name


def test_bf16_fine_tunes_close_to_fp32_on_cpu():
    fp32, bf16 = _tiny_run("fp32"), _tiny_run("bf16")
    assert all(p.dtype == torch.float32 for p in bf16.generator.parameters())
    assert fp32.losses != bf16.losses  # it really ran in another precision
    for a, b in zip(fp32.losses, bf16.losses, strict=True):
        assert abs(a - b) <= 0.02 * abs(a)


# --------------------------------------------------------------------------------------------------
# CUDA
# --------------------------------------------------------------------------------------------------


@pytest.fixture
def cuda_ext(monkeypatch):
    from jojogan.op import _build

    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    return _build.load_extension()


# (input shape, up, down, pad): StyleGAN2's calls, odd sizes, one plane count past the grid's z limit.
SMALL_CASES = [
    ((2, 5, 17, 13), 2, 1, (2, 1, 2, 1)),
    ((2, 5, 17, 13), 1, 2, (1, 1, 1, 1)),
    ((2, 5, 17, 13), 1, 1, (2, 2, 2, 2)),
    ((2, 5, 17, 13), 1, 1, (1, 2, 0, 3)),
    ((1, 3, 9, 11), 2, 2, (3, 0, 1, 2)),
    ((1, 3, 9, 11), 1, 1, (-1, 2, 0, -1)),
    ((1, 70000, 3, 4), 2, 1, (2, 1, 2, 1)),
]


@needs_cuda
@pytest.mark.parametrize(("shape", "up", "down", "pad"), SMALL_CASES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cuda_small_upfirdn2d_matches_generic_and_reference(cuda_ext, shape, up, down, pad, dtype):
    x = torch.randn(shape, dtype=dtype, device="cuda")
    k = torch.rand(4, 4, dtype=dtype, device="cuda")  # asymmetric: a flipped tap would show
    args = (up, up, down, down, *pad)
    small = cuda_ext.upfirdn2d(x, k, *args, allow_small=True)
    generic = cuda_ext.upfirdn2d(x, k, *args, allow_small=False)
    ref = upfirdn2d_ref(x, k, (up, up), (down, down), pad)
    tol = {"rtol": 1e-5, "atol": 1e-5} if dtype == torch.float32 else {"rtol": 1e-12, "atol": 1e-12}
    torch.testing.assert_close(small, ref, **tol)
    torch.testing.assert_close(small, generic, **tol)


@needs_cuda
def test_cuda_small_upfirdn2d_bf16_and_non_contiguous(cuda_ext):
    k = make_kernel([1, 3, 3, 1]).cuda()
    x = torch.randn(2, 8, 33, 33, device="cuda").transpose(2, 3)
    for up, down, pad in ((2, 1, (2, 1, 2, 1)), (1, 2, (1, 1, 1, 1))):
        exact = upfirdn2d_ref(x.double(), k.double(), (up, up), (down, down), pad)
        out = cuda_ext.upfirdn2d(x.bfloat16(), k.bfloat16(), up, up, down, down, *pad)
        assert out.dtype == torch.bfloat16
        torch.testing.assert_close(out.double(), exact, rtol=2e-2, atol=2e-2)
        fp32 = cuda_ext.upfirdn2d(x, k, up, up, down, down, *pad)
        torch.testing.assert_close(fp32.double(), exact, rtol=1e-5, atol=1e-5)


@needs_cuda
def test_cuda_fused_leaky_relu_bf16(cuda_ext):
    x = torch.randn(2, 6, 9, 7, device="cuda")
    bias = torch.randn(6, device="cuda")
    out, mask = cuda_ext.fused_bias_leaky_relu(x.bfloat16(), bias.bfloat16(), 0.2, 2**0.5, True)
    assert out.dtype == torch.bfloat16
    ref = fused_leaky_relu_ref(x.bfloat16().float(), bias.bfloat16().float(), 0.2, 2**0.5)
    torch.testing.assert_close(out.float(), ref, rtol=1e-2, atol=1e-2)
    assert torch.equal(mask, x.bfloat16().float() + bias.bfloat16().float().view(1, -1, 1, 1) > 0)


@needs_cuda
def test_cuda_fine_tune_bf16_tracks_fp32(cuda_ext):
    fp32 = _tiny_run("fp32", "cuda")
    bf16 = _tiny_run("bf16", "cuda")
    assert fp32.losses != bf16.losses
    for a, b in zip(fp32.losses, bf16.losses, strict=True):
        assert abs(a - b) <= 0.02 * abs(a)
    assert torch.backends.cudnn.allow_tf32 is False  # the scope restored the fixture's setting
