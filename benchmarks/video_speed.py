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
alignment the crops), end to end, and the flicker ratios (face, seam); plus the CPU model and load.
"""

from __future__ import annotations

import copy
import os
import platform
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch
from common import arg_parser, emit, machine
from PIL import Image

from jojogan.api import JoJoGAN, pick_device
from jojogan.config import StylizeConfig
from jojogan.inversion.align import warm_up_detector
from jojogan.inversion.encoders import ENCODERS, Encoder
from jojogan.style_file import save_style
from jojogan.stylegan2 import Generator
from jojogan.video import VideoConfig

SHARED = Path(os.environ.get("JOJOGAN_SHARED", Path(__file__).resolve().parents[2] / "shared"))


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


def _clip(path: Path, frames: int, width: int, height: int) -> Path:
    """A camera path with hand shake over the face photo, H.264 + AAC."""
    import av

    with Image.open(SHARED / "images" / "jojogan" / "test_input" / "iu.jpeg") as photo:
        photo = photo.convert("RGB")
    scale = 1.3 * height / photo.height
    centre = np.array([photo.width / 2, photo.height * 0.5])
    rng = np.random.default_rng(0)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        audio = container.add_stream("aac", rate=44100, layout="mono")
        for i in range(frames):
            t = i / max(frames - 1, 1)
            turn = np.deg2rad(3 * np.sin(2 * t))
            zoom = scale * (0.9 + 0.1 * t)
            linear = zoom * np.array([[np.cos(turn), -np.sin(turn)], [np.sin(turn), np.cos(turn)]])
            shift = np.array([width / 2 + 30 * t - 15, height / 2]) + rng.normal(0, 1.5, 2)
            matrix = np.linalg.inv(np.vstack([np.c_[linear, shift - linear @ centre], [0, 0, 1]]))
            image = photo.transform((width, height), Image.Transform.AFFINE, tuple(matrix[:2].ravel()))
            frame = av.VideoFrame.from_ndarray(np.asarray(image), format="rgb24")
            frame.pts = i
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
        samples = np.sin(2 * np.pi * 440 * np.arange(int(44100 * frames / 30)) / 44100).astype(np.float32)
        tone = av.AudioFrame.from_ndarray(0.3 * samples[None], format="flt", layout="mono")
        tone.sample_rate, tone.pts, tone.time_base = 44100, 0, Fraction(1, 44100)
        for packet in [*audio.encode(tone), *audio.encode()]:
            container.mux(packet)
    return path


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
    return {"frames_per_second": report["frames_per_second"], "stages": stages, "flicker": flicker}


def main() -> None:
    parser = arg_parser(__doc__)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--frames", type=int, default=12)
    parser.add_argument("--width", type=int, default=960)
    parser.add_argument("--height", type=int, default=720)
    parser.add_argument("--latent", default="smooth,shot,frame")
    args = parser.parse_args()

    device = pick_device(args.device)
    ENCODERS[RandomE4E.name] = RandomE4E
    results = {}
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        clip = _clip(folder / "clip.mp4", args.frames, args.width, args.height)
        pipe, style = _pipeline(folder, args.size, device)
        settings = StylizeConfig(inversion=RandomE4E.name, paste=True, match_colour=True)
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
            "frame_size": [args.width, args.height],
            "device": str(device),
            "modes": results,
            "cpu": platform.processor() or _cpu_model(),
            "load_average": [round(x, 2) for x in os.getloadavg()],
            **machine(),
        }
    )


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


if __name__ == "__main__":
    main()
