"""The alpha slider with the Python API: one photo from the original face (α = 0) to fully stylized (α = 1).

    python examples/alpha_slider.py photo.jpg mystyle.safetensors --base stylegan2-ffhq-config-f.pt

Writes ``slider.png`` (a labelled strip) and ``slider.gif``. The photo is aligned and inverted once; each
α only re-runs the blended synthesis.
"""

from __future__ import annotations

import argparse

from jojogan import JoJoGAN
from jojogan.imaging import labelled_strip, save_gif, save_image


def main() -> None:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("photo")
    parser.add_argument("style", help="a style file (.safetensors, or an official JoJoGAN .pt)")
    parser.add_argument("--base", default=None, help="StyleGAN2 checkpoint (default: the weights cache)")
    parser.add_argument("--e4e", default=None, help="e4e weights; without them, use --inversion optimize")
    parser.add_argument("--inversion", default="e4e", choices=["e4e", "optimize"])
    parser.add_argument("--steps", type=int, default=6, help="number of α values")
    parser.add_argument("--out", default="slider", help="output name without suffix")
    args = parser.parse_args()

    pipe = JoJoGAN.from_pretrained(base=args.base, e4e=args.e4e)
    face = pipe.prepare(args.photo, inversion=args.inversion)
    frames = pipe.slider(face, args.style, steps=args.steps)
    strip = labelled_strip([image for _, image in frames], [f"alpha {a:.2f}" for a, _ in frames])
    print("strip:", save_image(strip, f"{args.out}.png"))
    print("gif:", save_gif([image.resize((256, 256)) for _, image in frames], f"{args.out}.gif"))


if __name__ == "__main__":
    main()
