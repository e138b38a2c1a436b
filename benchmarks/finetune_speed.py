"""Fine-tuning speed of ``jojogan.finetune.finetune`` on random full-size weights.

    python benchmarks/finetune_speed.py --size 1024 --iterations 3 --json

The last line printed is JSON with ``s_per_iter``, ``gflop_per_iter`` (torch's FLOP counter over one
step), ``achieved_gflops``, ``matmul_peak_gflops`` (measured in the same run), ``utilization``,
``peak_rss_mb`` (and ``peak_cuda_mb`` on a GPU).

FLOPs are counted as (two iterations) − (one iteration), so one-time setup is left out.

``--baseline`` times the original notebook's loop on the same models, with its known waste put back:
discriminator features of the fixed references recomputed every step, parameter gradients computed for the
frozen discriminator, the original's pure-PyTorch upfirdn2d (zero-stuffing, every channel convolved as
a separate 1-channel image at full resolution, then sub-sampled), the per-sample grouped modulated
convolution, and glibc's default allocator (the CPU memory reuse of ``jojogan.op.memory`` is off). It is
the "before" of the comparison. ``JOJOGAN_CPU_MEMORY=system`` times the product without that reuse.

``--without LEVER,...`` switches GPU levers of the product off again, for an ablation (one row per lever
added): ``small-upfirdn2d`` (the specialised 4-tap kernel; the generic one serves instead), ``fused-adam``
(the foreach Adam instead), ``one-sync`` (two host reads per step: the loss, then the gradient check).
``--cudnn-autotune`` turns ``torch.backends.cudnn.benchmark`` on for the run (the product leaves it off).
``--precision`` sets the fine-tune precision (fp32, tf32, bf16; default auto).
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import time
from unittest import mock

import torch
import torch.nn.functional as F
from common import arg_parser, count_gflop, report, sync

from jojogan.api import pick_device
from jojogan.config import FinetuneConfig
from jojogan.finetune import finetune
from jojogan.op import upfirdn2d
from jojogan.op.memory import cpu_memory_reuse
from jojogan.op.resample import conv_up_padding
from jojogan.stylegan2 import Discriminator, Generator
from jojogan.stylegan2.layers import ModulatedConv2d


def build(size: int, references: int, device: torch.device):
    torch.manual_seed(0)
    gen = Generator(size, 512, 8, 2).to(device).eval()
    disc = Discriminator(size, 2).to(device).eval()
    refs = torch.rand(references, 3, size, size, device=device) * 2 - 1
    latents = gen.mean_latent(256).unsqueeze(1).repeat(references, gen.n_latent, 1)
    latents = latents + 0.1 * torch.randn_like(latents)
    return gen, disc, refs, latents


def run_product(
    gen,
    disc,
    refs,
    latents,
    iterations: int,
    step_times: list[float],
    device,
    micro_batch=None,
    precision="auto",
) -> None:
    last = [time.perf_counter()]

    def on_step(step, loss, preview):
        sync(device)
        now = time.perf_counter()
        step_times.append(now - last[0])
        last[0] = now

    config = FinetuneConfig(iterations=iterations, seed=0, micro_batch=micro_batch, precision=precision)
    # as JoJoGAN.finetune does: the run is one job of the CPU memory policy
    with cpu_memory_reuse(device):
        finetune(gen, disc, refs, latents, config, callback=on_step, show_progress=False, device=device)


def grouped_modulated_conv(self, x, style):
    """The original per-sample formulation: a weight per sample, one grouped convolution."""
    batch, in_channels, height, width = x.shape
    weight = self.scale * self.weight * style.view(batch, 1, in_channels, 1, 1)
    if self.demodulate:
        weight = weight * torch.rsqrt(weight.pow(2).sum([2, 3, 4], keepdim=True) + 1e-8)
    k = self.kernel_size
    x = x.reshape(1, batch * in_channels, height, width)
    if self.upsample:
        weight = weight.transpose(1, 2).reshape(batch * in_channels, self.out_channels, k, k)
        out = F.conv_transpose2d(x, weight, stride=2, groups=batch)
        out = out.reshape(batch, self.out_channels, out.shape[2], out.shape[3])
        return upfirdn2d(out, self.blur.kernel, pad=conv_up_padding(self.blur.kernel.shape[0], k))
    weight = weight.reshape(batch * self.out_channels, in_channels, k, k)
    out = F.conv2d(x, weight, padding=k // 2, groups=batch)
    return out.reshape(batch, self.out_channels, height, width)


def channel_as_batch_upfirdn2d(x, kernel, up, down, pad):
    """The original's pure-PyTorch up-FIR-down: every channel as its own 1-channel image.

    Zero-stuffs by padding an inserted axis, pads, convolves all ``batch * channels`` planes with one
    single-channel kernel at full resolution, then keeps every ``down``-th sample.
    """
    batch, channels, height, width = x.shape
    up_x, up_y = up
    down_x, down_y = down
    x0, x1, y0, y1 = pad
    kh, kw = kernel.shape
    planes = x.reshape(batch * channels, height, 1, width, 1)
    planes = F.pad(planes, [0, up_x - 1, 0, 0, 0, up_y - 1])
    planes = planes.reshape(batch * channels, 1, height * up_y, width * up_x)
    planes = F.pad(planes, [max(x0, 0), max(x1, 0), max(y0, 0), max(y1, 0)])
    planes = planes[
        :, :, max(-y0, 0) : planes.shape[2] - max(-y1, 0), max(-x0, 0) : planes.shape[3] - max(-x1, 0)
    ]
    out = F.conv2d(planes, kernel.to(x).flip([0, 1]).view(1, 1, kh, kw))
    out = out[:, :, ::down_y, ::down_x]
    return out.reshape(batch, channels, out.shape[2], out.shape[3])


def run_baseline(gen, disc, refs, latents, iterations: int, step_times: list[float], device) -> None:
    """The original notebook loop, waste included (see the module docstring)."""
    import copy

    upfirdn2d_module = importlib.import_module("jojogan.op.upfirdn2d")
    patches = [
        mock.patch.object(upfirdn2d_module, "upfirdn2d_ref", channel_as_batch_upfirdn2d),
        mock.patch.object(ModulatedConv2d, "forward", grouped_modulated_conv),
    ]
    gen = copy.deepcopy(gen).train()
    disc = copy.deepcopy(disc).train()  # gradients flow into D's parameters, as in the original
    optimizer = torch.optim.Adam(gen.parameters(), lr=2e-3, betas=(0.0, 0.99))
    swap = list(range(7, gen.n_latent))
    with patches[0], patches[1]:
        for _ in range(iterations):
            start = time.perf_counter()
            mean_w = gen.get_latent(torch.randn(latents.shape[0], gen.style_dim, device=device))
            in_latent = latents.clone()
            in_latent[:, swap] = mean_w.unsqueeze(1).repeat(1, len(swap), 1)
            img = gen.synthesis(in_latent, gen.make_noise(latents.shape[0]))
            with torch.no_grad():
                real = disc.features(refs)
            fake = disc.features(img)
            loss = sum(F.l1_loss(a, b) for a, b in zip(fake, real, strict=True)) / len(fake)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            sync(device)
            step_times.append(time.perf_counter() - start)


LEVERS = ("small-upfirdn2d", "fused-adam", "one-sync")


def _two_sync_health(loss, params):
    """The step check before one-sync: the loss read, then a second read for the gradients."""
    value = float(loss)
    norms = [torch.linalg.vector_norm(p.grad) for p in params if p.grad is not None]
    return value, bool(torch.isfinite(torch.stack(norms)).all())


_ADAM = torch.optim.Adam


def _unfused_adam(*args, **kwargs):
    """torch's Adam with its default (foreach) implementation, whatever the caller asked."""
    return _ADAM(*args, **{**kwargs, "fused": False})


def levers_off(names: list[str], device: torch.device) -> contextlib.ExitStack:
    """Patches that switch the named product levers off (see the module docstring)."""
    finetune_module = importlib.import_module("jojogan.finetune")
    stack = contextlib.ExitStack()
    for name in names:
        if name == "small-upfirdn2d" and device.type == "cuda":
            from jojogan.op import _build

            ext = _build.load_extension()
            stack.enter_context(
                mock.patch.object(ext, "upfirdn2d", functools.partial(ext.upfirdn2d, allow_small=False))
            )
        elif name == "fused-adam":
            stack.enter_context(mock.patch.object(finetune_module.torch.optim, "Adam", _unfused_adam))
        elif name == "one-sync":
            stack.enter_context(mock.patch.object(finetune_module, "_loss_and_health", _two_sync_health))
    return stack


def main() -> None:
    parser = arg_parser(__doc__)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--iterations", type=int, default=3, help="timed iterations (after one warm-up)")
    parser.add_argument("--references", type=int, default=1)
    parser.add_argument("--micro-batch", type=int, default=None, help="references per pass (jojogan)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--baseline", action="store_true", help="time the original loop instead")
    parser.add_argument("--precision", default="auto", help="fine-tune precision: auto, fp32, tf32, bf16")
    parser.add_argument("--without", default="", help=f"levers to switch off: {', '.join(LEVERS)}")
    parser.add_argument("--no-flops", action="store_true", help="skip the FLOP count (faster)")
    parser.add_argument("--cudnn-autotune", action="store_true", help="torch.backends.cudnn.benchmark = True")
    args = parser.parse_args()
    without = [name for name in args.without.split(",") if name]
    unknown = sorted(set(without) - set(LEVERS))
    if unknown:
        parser.error(f"unknown levers {unknown}; choose from {', '.join(LEVERS)}")

    if args.threads:
        torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    torch.backends.cudnn.benchmark = args.cudnn_autotune
    gen, disc, refs, latents = build(args.size, args.references, device)
    runner = (
        run_baseline
        if args.baseline
        else functools.partial(run_product, micro_batch=args.micro_batch, precision=args.precision)
    )

    with levers_off(without, device):
        # per-iteration work: two iterations minus one, so one-time setup (reference features) is excluded
        gflop = float("nan")
        if not args.no_flops:
            gflop = count_gflop(lambda: runner(gen, disc, refs, latents, 2, [], device)) - count_gflop(
                lambda: runner(gen, disc, refs, latents, 1, [], device)
            )
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        step_times: list[float] = []
        runner(gen, disc, refs, latents, args.iterations + 2, step_times, device)
    timed = step_times[2:]  # the first steps pay for allocation and kernel selection (and autotuning)
    fields = {
        "benchmark": "finetune_baseline" if args.baseline else "finetune",
        "size": args.size,
        "references": args.references,
        "micro_batch": None if args.baseline else args.micro_batch,
        "iterations_timed": len(timed),
        "s_per_iter_min": round(min(timed), 4),
        "s_per_iter_median": round(sorted(timed)[len(timed) // 2], 4),
        "precision": None if args.baseline else args.precision,
        "without": without,
        "cudnn_autotune": args.cudnn_autotune,
    }
    report(fields, sum(timed) / len(timed), gflop, device, "iter", args.json)


if __name__ == "__main__":
    main()
