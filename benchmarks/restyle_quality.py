"""Reconstruction quality of e4e against ReStyle, step by step, on the real test photos.

    python benchmarks/restyle_quality.py --iterations 5 --json
    python benchmarks/restyle_quality.py --photos /path/to/aligned_or_not --restyle-e4e restyle-e4e-hf

Each photo is FFHQ-aligned (dlib), brought to the encoders' 256 px input, inverted, and the code rendered by
the encoder's own decoder with its stored noise and pooled to 256 px, as the ReStyle paper evaluates. For
e4e (one step) and for every ReStyle step it reports, averaged over the photos and per photo:

* ``lpips``: LPIPS (AlexNet, lpips v0.1 layers, as ReStyle's ``calc_losses_on_images``) between the photo
  and the reconstruction, lower is better;
* ``identity``: cosine similarity of ArcFace IR-SE50 embeddings (``jojogan.identity``, pSp's crop) of the
  photo and the reconstruction, higher is better.

Nothing is downloaded: the files must be in the weights cache (``jojogan weights download e4e restyle-psp
... arcface-ir-se50 alexnet``, the ReStyle ones by hand from the authors' Google Drive) or be given as
paths. When any is missing, the script prints one JSON line naming them and exits 0.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
from pathlib import Path

import torch
import torch.nn.functional as F

from jojogan import weights
from jojogan.inversion import align_face, load_e4e, load_restyle, to_e4e_input

SHARED = Path(os.environ.get("JOJOGAN_SHARED", Path(__file__).resolve().parents[2] / "shared"))
PHOTOS = SHARED / "images" / "jojogan" / "test_input"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--photos", type=Path, default=PHOTOS, help="a folder of photos (default: $JOJOGAN_SHARED's)"
    )
    parser.add_argument("--iterations", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    for name, default in [
        ("e4e", "e4e"),
        ("restyle-psp", "restyle-psp"),
        ("restyle-e4e", "restyle-e4e"),
        ("arcface", "arcface-ir-se50"),
        ("lpips-backbone", "alexnet"),
    ]:
        parser.add_argument(f"--{name}", default=default, help=f"registry name or path (default {default})")
    parser.add_argument("--json", action="store_true", help="print only the JSON line")
    return parser.parse_args()


def find_files(args: argparse.Namespace) -> tuple[dict[str, Path], list[str]]:
    """The files each role needs, and what is missing (registry rows must be cached and intact)."""
    found, missing = {}, []
    for role in ("e4e", "restyle_psp", "restyle_e4e", "arcface", "lpips_backbone"):
        spec = getattr(args, role)
        entry = weights.find_entry(spec)
        if entry is not None:
            status = weights.check_cached(entry)
            if status.usable:
                found[role] = status.path
            else:
                missing.append(f"{entry.filename} ({entry.name}: {status.state} in {weights.cache_dir()})")
        elif Path(spec).is_file():
            found[role] = Path(spec)
        else:
            missing.append(f"{spec} ({role}: no such file or registry name)")
    if importlib.util.find_spec("lpips") is None:
        missing.append("the lpips package (pip install 'jojogan[lpips]') for its calibrated layers")
    if not args.photos.is_dir() or not sorted(args.photos.iterdir()):
        missing.append(f"photos in {args.photos}")
    return found, missing


def metrics(photo: torch.Tensor, image: torch.Tensor, lpips, recognizer) -> dict[str, float]:
    """LPIPS and ArcFace cosine between a ``[1, 3, 256, 256]`` photo and reconstruction."""
    with torch.no_grad():
        distance = lpips(image.clamp(-1, 1), photo).item()
        embeddings = recognizer.embed(torch.cat([photo, image.clamp(-1, 1)]))
    return {
        "lpips": round(distance, 4),
        "identity": round(F.cosine_similarity(*embeddings.split(1)).item(), 4),
    }


def evaluate(files: dict[str, Path], photos: list[Path], iterations: int, device: str) -> dict:
    """Per encoder and step: the metrics of every photo, and their means."""
    from jojogan.identity import load_face_recognizer
    from jojogan.perceptual import load_lpips

    lpips = load_lpips("alex", backbone=str(files["lpips_backbone"]), download=False).to(device)
    recognizer = load_face_recognizer("arcface-ir-se50", files["arcface"], device)
    inputs = {p.name: to_e4e_input(align_face(p).image)[None].to(device) for p in photos}
    per_photo: dict[str, dict[str, list]] = {}
    e4e = load_e4e(files["e4e"], device, with_decoder=True)
    for name, x in inputs.items():
        with torch.no_grad():
            image = F.adaptive_avg_pool2d(e4e.decoder.synthesis(e4e(x)), 256)
        per_photo.setdefault("e4e", {})[name] = [metrics(x, image, lpips, recognizer)]
    del e4e
    for role in ("restyle_psp", "restyle_e4e"):
        inverter = load_restyle(files[role], device)
        for name, x in inputs.items():
            with torch.no_grad():
                images = [inverter.reconstruct(w) for w in inverter.steps(x, iterations)]
            per_photo.setdefault(role.replace("_", "-"), {})[name] = [
                metrics(x, image, lpips, recognizer) for image in images
            ]
        del inverter
    return {encoder: summary(results) for encoder, results in per_photo.items()}


def summary(results: dict[str, list[dict[str, float]]]) -> dict:
    steps = len(next(iter(results.values())))
    means = [
        {
            key: round(sum(r[step][key] for r in results.values()) / len(results), 4)
            for key in ("lpips", "identity")
        }
        for step in range(steps)
    ]
    return {"per_step_mean": means, "per_photo": results}


def main() -> None:
    args = parse_args()
    files, missing = find_files(args)
    if missing:
        print(json.dumps({"benchmark": "restyle_quality", "skipped": True, "missing": missing}))
        return
    photos = sorted(p for p in args.photos.iterdir() if p.suffix.lower() in {".jpg", ".jpeg", ".png"})
    result = evaluate(files, photos, args.iterations, args.device)
    if not args.json:
        for encoder, entry in result.items():
            print(encoder, entry["per_step_mean"])
    print(json.dumps({"benchmark": "restyle_quality", "photos": [p.name for p in photos], **result}))


if __name__ == "__main__":
    main()
