"""Video stylizing speed per stage, and the flicker of the three latent modes, on random full-size weights.

    python benchmarks/video_speed.py --size 1024 --frames 12 --json

Builds a clip at run time from the shared face photo (``$JOJOGAN_SHARED/images/jojogan/test_input``): a
camera path (pan, zoom, a small turn, hand shake) over the photo, ``--width`` x ``--height`` frames,
H.264 with an AAC tone. The pipeline is the product's (``JoJoGAN.stylize_video``) on a random
``Generator(size, 512, 8, 2)`` base, a style made by perturbing it, and e4e's architecture with random
weights held in memory as a row of the encoder table (below 1024 px its first ``n_latent`` codes are
used). The encoder, the style and dlib's models are loaded before the timed runs. Random weights draw no
faces, so the flicker figures say how steady the machinery is on such pictures, not how a trained style
looks.

Each ``--latent`` mode is one full run with ``--report``. The last line printed is JSON: per mode, the
frames/s of every stage (decode counts every pass's decoded frames; tracking is detection and landmarks;
alignment the crops; figures the flicker pass), end to end, the flicker ratios (face, seam) and the
share of the run spent on the figures; plus the CPU model and load.
"""

from __future__ import annotations

import copy
import os
import tempfile
import time
from pathlib import Path

import torch
from common import arg_parser, camera_clip, cpu_model, emit, machine

from jojogan.api import JoJoGAN, pick_device
from jojogan.config import StylizeConfig
from jojogan.inversion.align import warm_up_detector
from jojogan.inversion.encoders import ENCODERS, Encoder
from jojogan.style_file import save_style
from jojogan.stylegan2 import Generator
from jojogan.video import VideoConfig


class RandomE4E(Encoder):
    """e4e's architecture (IR-SE50, 18 x 512 codes) with random weights, built in memory."""

    name = "random-e4e"

    def __init__(self, context, path=None):
        from jojogan.inversion.e4e import E4EInverter, Encoder4Editing

        super().__init__(context)
        torch.manual_seed(0)
        latent_avg = context.generator.mean_latent(1000)[0].detach().cpu().expand(18, 512).clone()
        self.model = (
            E4EInverter(Encoder4Editing(), latent_avg).to(context.device).eval().requires_grad_(False)
        )

    def invert(self, faces, request):
        return self.model.invert(list(faces))[:, : self.context.generator.n_latent]


def _pipeline(folder: Path, size: int, device) -> tuple[JoJoGAN, Path]:
    torch.manual_seed(0)
    base = Generator(size, 512, 8, 2).eval()
    torch.save({"g_ema": base.state_dict()}, folder / "base.pt")
    styled = copy.deepcopy(base)
    with torch.no_grad():
        for param in styled.parameters():
            param.add_(0.02 * torch.randn_like(param))
    style = save_style(folder / "style.safetensors", styled, {})
    return JoJoGAN.from_pretrained(base=folder / "base.pt", device=device), style


def _figures(report: dict) -> dict:
    stages = {name: values["frames_per_second"] for name, values in report["timings"].items()}
    flicker = {region: values["ratio"] for region, values in (report["flicker"] or {}).items()}
    figures = sum(report["timings"].get(stage, {}).get("seconds", 0.0) for stage in ("figures", "identity"))
    return {
        "frames_per_second": report["frames_per_second"],
        "stages": stages,
        "flicker": flicker,
        "figures_fraction": round(figures / report["seconds"], 4),  # flicker + identity, of the whole run
    }


def main() -> None:
    parser = arg_parser(__doc__)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--frames", type=int, default=12)
    parser.add_argument("--width", type=int, default=960)
    parser.add_argument("--height", type=int, default=720)
    parser.add_argument("--latent", default="smooth,shot,frame")
    parser.add_argument("--identity", default=None, help="measure each track's identity with this network")
    args = parser.parse_args()

    device = pick_device(args.device)
    ENCODERS[RandomE4E.name] = RandomE4E
    results = {}
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        clip = camera_clip(folder / "clip.mp4", args.frames, args.width, args.height)
        pipe, style = _pipeline(folder, args.size, device)
        settings = StylizeConfig(
            inversion=RandomE4E.name, paste=True, match_colour=True, identity=args.identity
        )
        pipe.encoder(RandomE4E.name)  # built (randomly initialised) outside the timed runs
        pipe.load_style(style)
        warm_up_detector()  # dlib's models load once, outside the timed runs
        for latent in args.latent.split(","):
            started = time.perf_counter()
            video = VideoConfig(latent=latent, report=True)
            result = pipe.stylize_video(clip, folder / f"{latent}.mp4", style, settings, video)
            results[latent] = {**_figures(result.report), "wall_s": round(time.perf_counter() - started, 1)}
            if not args.json:
                print(latent, results[latent], flush=True)
    emit(
        {
            "benchmark": "video",
            "size": args.size,
            "frames": args.frames,
            "identity": args.identity,
            "frame_size": [args.width, args.height],
            "device": str(device),
            "modes": results,
            "cpu": cpu_model(),
            "load_average": [round(x, 2) for x in os.getloadavg()],
            **machine(),
        }
    )


if __name__ == "__main__":
    main()
