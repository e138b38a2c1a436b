"""The weights manager: a registry of the official files, a verified cache, and first-use downloads.

The registry (:data:`REGISTRY`) is data: one row per file with its size, sha256 (where known), licence and
where it is hosted. :func:`resolve_weights` turns a registry name, a file name or a path into a file on disk,
downloading it on first use when asked to.

Design of a download (:func:`download`):

* One process at a time per file: a :class:`filelock.FileLock` in ``<cache>/.locks``. A process that waited
  finds the file already there and does not fetch it again.
* Files hosted on Hugging Face go through :func:`huggingface_hub.hf_hub_download` (its resume, retries, Xet
  transfer, token and ``HF_HUB_OFFLINE``), staged in ``<cache>/.incomplete/hf``.
* Plain URLs (GitHub releases) and every file when ``JOJOGAN_WEIGHTS_MIRROR=<base-url>`` is set
  (``<base-url>/<file name>``) go through :func:`pooch.retrieve`, which checks the sha256 and moves the file
  into place only when it matches, with a downloader of ours that adds HTTP ``Range`` resume (pooch has
  none): the bytes accumulate in ``<cache>/.incomplete/<file>.part``, so an interrupted download, in this
  process (retried while the file grows) or a later one, continues where it stopped.
* Only a file whose size and sha256 (where the registry knows it) match is moved, with :func:`os.replace`,
  into ``<cache>/<file name>``; the cache itself never holds a half-written file. A sidecar record
  (``<cache>/.meta/<file>.json``: size, modification time, sha256) lets later runs trust the file without
  hashing it again, and exposes a file changed afterwards (truncated, overwritten) so it is replaced, never
  loaded. For rows whose sha256 is unknown the first download's hash is pinned in that record.
* Google Drive links, which the original project used and which break, are never fetched automatically;
  they are printed as the last manual resort.
* ``JOJOGAN_OFFLINE=1`` or ``HF_HUB_OFFLINE=1``: no network at all; a missing file is one clear error that
  says where to put it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from jojogan.errors import CheckpointError
from jojogan.fileio import file_sha256
from jojogan.op._dispatch import home_dir

log = logging.getLogger(__name__)

NVIDIA_NC = "Nvidia Source Code License-NC (non-commercial)"
_STYLE_LICENCE = f"JoJoGAN code MIT; fine-tuned from NVIDIA's FFHQ StyleGAN2: {NVIDIA_NC}"
_TORCHVISION_LICENCE = (
    "torchvision BSD-3-Clause; ImageNet-trained: the data set's terms may apply (torchvision's own note)"
)
# Every official style file is one 1024 px generator state dict; issue 9 measured about this many bytes.
_STYLE_SIZE = 132_769_079
_APPROX_TOLERANCE = 0.01
_HF = "https://huggingface.co"
_GITHUB = "https://github.com"
# Bytes read but not yet handed over are lost when a connection breaks, so network reads stay small.
_NET_CHUNK = 1 << 16


class WeightsError(CheckpointError):
    """A weights file could not be found, downloaded or verified (a :class:`CheckpointError`, as a missing
    file always was)."""


class WeightsOfflineError(WeightsError):
    """A file is needed, it is not cached, and downloads are switched off."""


class WeightsDownloadError(WeightsError):
    """Every source of a file failed (network error, wrong size, wrong sha256)."""


class GeneratorOnlyError(CheckpointError):
    """A base checkpoint holds only the generator where the discriminator (``d``) is needed."""


@dataclass(frozen=True)
class WeightsEntry:
    """One row of the registry.

    Attributes:
        name: registry name used on the command line (``--base ffhq``).
        filename: file name in the cache and on the mirror.
        description: what it is.
        licence: the licence as the file's authors state it.
        size: exact size in bytes, or ``None`` when not known.
        sha256: hex digest, or ``None`` when not known (then the file is reported as unverified and the
            first download's hash is pinned locally).
        sha256_prefix: the leading hex digits of the sha256 when only they are published (torchvision puts
            them in its file names and checks them the same way).
        approx_size: the size in bytes when it is known only roughly (the official styles); a file more than
            1% off is refused, which catches an HTML error page or a truncated copy saved under the name.
        max_size: for a row whose size is not published, the most bytes a download may bring before it
            is stopped (:func:`byte_limit`).
        hf_repo: Hugging Face model repository holding ``filename`` at its root.
        url: a plain HTTPS URL of the same bytes (e.g. a GitHub release asset).
        drive_id: Google Drive id the original project used; never fetched automatically.
        layout: what the loader expects inside.
        profile: for a base generator, its domain profile (a key of :data:`jojogan.domains.PROFILES`).
    """

    name: str
    filename: str
    description: str
    licence: str
    size: int | None = None
    sha256: str | None = None
    hf_repo: str | None = None
    url: str | None = None
    drive_id: str | None = None
    layout: str = ""
    sha256_prefix: str | None = None
    approx_size: int | None = None
    max_size: int | None = None
    profile: str | None = None

    @property
    def hf_page(self) -> str | None:
        """The Hugging Face repository's page."""
        return f"{_HF}/{self.hf_repo}" if self.hf_repo else None

    @property
    def hf_url(self) -> str | None:
        """The browser/``curl`` URL of the Hugging Face copy."""
        return f"{self.hf_page}/resolve/main/{self.filename}" if self.hf_repo else None

    @property
    def drive_url(self) -> str | None:
        return f"https://drive.google.com/uc?id={self.drive_id}" if self.drive_id else None


def _style(
    stem: str, *, hf_repo: str | None = None, drive_id: str, sha256: str | None = None
) -> WeightsEntry:
    kind = "colour-preserving " if stem.endswith("_preserve_color") else ""
    return WeightsEntry(
        name=stem,
        filename=f"{stem}.pt",
        description=f"official JoJoGAN {kind}style '{stem.removesuffix('_preserve_color')}' (about 133 MB)",
        licence=_STYLE_LICENCE,
        sha256=sha256,
        approx_size=_STYLE_SIZE,
        hf_repo=hf_repo,
        drive_id=drive_id,
        layout="{'g': generator state dict} (1024 px FFHQ generator)",
    )


_RESTYLE_LICENCE = "restyle-encoder code MIT; its decoder is NVIDIA's {}: " + NVIDIA_NC
# ReStyle's README names what each decoder was trained on; the AFHQ wild one is a StyleGAN2-ADA model.
_RESTYLE_DOMAINS = {
    "ffhq": ("FFHQ faces", "FFHQ StyleGAN2", 1024),
    "cars": ("Stanford Cars (read as 192x256 pictures)", "LSUN Car StyleGAN2", 512),
    "church": ("LSUN Church", "LSUN Church StyleGAN2", 256),
    "horse": ("LSUN Horse", "LSUN Horse StyleGAN2", 256),
    "afhq_wild": ("AFHQ wild animals", "AFHQ Wild StyleGAN2-ADA", 512),
}


def _restyle(variant: str, domain: str, drive_id: str) -> WeightsEntry:
    """A ReStyle encoder from the authors' Google Drive (yuval-alaluf/restyle-encoder README)."""
    what, decoder, size = _RESTYLE_DOMAINS[domain]
    backbone = "IR-SE50" if domain == "ffhq" else "ResNet-34"
    encoder_type, title = {"psp": ("BackboneEncoder", "pSp"), "e4e": ("ProgressiveBackboneEncoder", "e4e")}[
        variant
    ]
    if backbone == "ResNet-34":
        encoder_type = "ResNet" + encoder_type
    n_styles = 2 * (size.bit_length() - 1) - 2
    return WeightsEntry(
        name=f"restyle-{variant}" + ("" if domain == "ffhq" else f"-{domain.replace('_', '-')}"),
        filename=f"restyle_{variant}_{domain}_encode.pt",
        description=f"ReStyle-{title} iterative encoder ({backbone}) for {what}, W+ [{n_styles}, 512]",
        licence=_RESTYLE_LICENCE.format(decoder),
        drive_id=drive_id,
        layout=(
            f"{{'state_dict': {{'encoder.*' ({encoder_type}), 'decoder.*' ({size} px StyleGAN2)}}, "
            f"'latent_avg': [{n_styles}, 512], 'opts': dict}}"
        ),
    )


_ADA = "https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained"
_TF_ERA = "https://nvlabs-fi-cdn.nvidia.com/stylegan2/networks"
_PICKLE_LAYOUT = (
    "NVIDIA network pickle ({layout}); read as data, never run, and converted once to the official layout "
    "(g_ema, d, latent_avg) in <cache>/converted (`jojogan convert`)"
)


def _nvidia(name: str, url: str, what: str, tf_era: bool = False) -> WeightsEntry:
    # the row's name is its domain profile's (jojogan.domains.PROFILES)
    """A base model NVIDIA publishes as a pickle (no size or sha256 published: pinned on first use)."""
    layout = (
        "TF-era (G, D, Gs) of dnnlib.tflib" if tf_era else "stylegan2-ada-pytorch {'G', 'D', 'G_ema', ...}"
    )
    return WeightsEntry(
        name=name,
        filename=url.rsplit("/", 1)[1],
        description=f"{what}: generator, discriminator and mean latent",
        licence=f"NVIDIA's StyleGAN2 models: {NVIDIA_NC}",
        url=url,
        layout=_PICKLE_LAYOUT.format(layout=layout),
        profile=name,
    )


# NVIDIA's own base models (URLs from NVlabs' READMEs and stylegan2-ada-pytorch's train.py resume list).
_NVIDIA_ROWS = (
    _nvidia(
        "ffhq-512",
        f"{_ADA}/transfer-learning-source-nets/ffhq-res512-mirror-stylegan2-noaug.pkl",
        "StyleGAN2 FFHQ faces, 512 px",
    ),
    _nvidia(
        "ffhq-256",
        f"{_ADA}/transfer-learning-source-nets/ffhq-res256-mirror-paper256-noaug.pkl",
        "StyleGAN2 FFHQ faces, 256 px",
    ),
    _nvidia("metfaces", f"{_ADA}/metfaces.pkl", "StyleGAN2-ADA MetFaces (painted portraits), 1024 px"),
    _nvidia("afhq-cat", f"{_ADA}/afhqcat.pkl", "StyleGAN2-ADA AFHQ cats, 512 px"),
    _nvidia("afhq-dog", f"{_ADA}/afhqdog.pkl", "StyleGAN2-ADA AFHQ dogs, 512 px"),
    _nvidia("afhq-wild", f"{_ADA}/afhqwild.pkl", "StyleGAN2-ADA AFHQ wild animals, 512 px"),
    _nvidia(
        "lsun-car",
        f"{_TF_ERA}/stylegan2-car-config-f.pkl",
        "StyleGAN2 LSUN cars, 512x384 inside 512 px",
        tf_era=True,
    ),
    _nvidia("lsun-cat", f"{_TF_ERA}/stylegan2-cat-config-f.pkl", "StyleGAN2 LSUN cats, 256 px", tf_era=True),
    _nvidia(
        "lsun-church",
        f"{_TF_ERA}/stylegan2-church-config-f.pkl",
        "StyleGAN2 LSUN churches, 256 px",
        tf_era=True,
    ),
    _nvidia(
        "lsun-horse", f"{_TF_ERA}/stylegan2-horse-config-f.pkl", "StyleGAN2 LSUN horses, 256 px", tf_era=True
    ),
)

_ROWS = (
    WeightsEntry(
        name="ffhq",
        filename="stylegan2-ffhq-config-f.pt",
        description="StyleGAN2 config-f, FFHQ, 1024 px: generator, discriminator and mean latent",
        licence=f"NVIDIA's FFHQ StyleGAN2 (rosinality's conversion): {NVIDIA_NC}",
        size=381_462_551,
        sha256="bae494ef77e32a9cd1792a81a3c167692a0e64f6bcd8b06592ff42917e2ed46e",
        hf_repo="akhaliq/jojogan-stylegan2-ffhq-config-f",
        drive_id="1Yr7KuD959btpmcKGAUsbAk5rPjX2MytK",
        layout="{'g_ema': ..., 'd': ..., 'latent_avg': [512]} in the rosinality layout",
        profile="ffhq",
    ),
    WeightsEntry(
        name="e4e",
        filename="e4e_ffhq_encode.pt",
        description="encoder4editing FFHQ encoder (IR-SE50 backbone) producing W+ [18, 512]",
        licence=f"encoder4editing code MIT; its decoder is NVIDIA's FFHQ StyleGAN2: {NVIDIA_NC}",
        size=1_201_649_680,
        sha256="2ace1d9a8c05c10a399bcd500b8dda118f759ff1aac89dbdab7435f2136a0999",
        hf_repo="akhaliq/JoJoGAN_e4e_ffhq_encode",
        drive_id="1cUv_reLE6k3604or78EranS7XzuVMWeO",
        layout="{'state_dict': {'encoder.*', 'decoder.*'}, 'latent_avg': [18, 512], 'opts': ...}",
    ),
    # ReStyle (the JoJoGAN paper's encoder): the authors' files are on Google Drive only.
    _restyle("psp", "ffhq", "1sw6I2lRIB0MpuJkpc8F5BJiSZrc0hjfE"),
    _restyle("e4e", "ffhq", "1e2oXVeBPXMQoUoC_4TNwAWpOPpSEhE_e"),
    WeightsEntry(
        name="restyle-e4e-hf",
        filename="restyle_e4e_ffhq.pt",
        description=(
            "ReStyle-e4e FFHQ encoder (IR-SE50), W+ [18, 512]: a third-party Hugging Face copy, not checked "
            "against the authors' file (restyle-e4e)"
        ),
        licence=_RESTYLE_LICENCE.format("FFHQ StyleGAN2"),
        sha256="89afa8b3255be61425714397be11f07b34312d76ea22382ecf80001da617da5b",
        approx_size=809_000_000,
        hf_repo="trysem/restyle-e4e-ffhq",
        layout="as restyle-e4e",
    ),
    _restyle("psp", "cars", "1zJHqHRQ8NOnVohVVCGbeYMMr6PDhRpPR"),
    _restyle("psp", "church", "1bcxx7mw-1z7dzbJI_z7oGpWG1oQAvMaD"),
    _restyle("psp", "afhq_wild", "1GyFXVTNDUw3IIGHmGS71ChhJ1Rmslhk7"),
    _restyle("e4e", "cars", "1v6Yi-Yne6JX0Pyas6XPS83IzKKUvCe8r"),
    _restyle("e4e", "church", "1sCRzbM1fGTgTbWO87jP_rxApw-tS0CH_"),
    _restyle("e4e", "horse", "19_sUpTYtJmhSAolKLm3VgI-ptYqd-hgY"),
    _restyle("e4e", "afhq_wild", "1HQlUPKirShHyL3kGnwVRjhfcb-j9s4V3"),
    WeightsEntry(
        name="codeformer",
        filename="codeformer.pth",
        description="CodeFormer face restoration network (cleans up stylized faces)",
        licence="S-Lab License 1.0 (non-commercial)",
        size=376_637_898,
        sha256="1009e537e0c2a07d4cabce6355f53cb66767cd4b4297ec7a4a64ca4b8a5684b7",
        url=f"{_GITHUB}/sczhou/CodeFormer/releases/download/v0.1.0/codeformer.pth",
        layout="{'params_ema': CodeFormer state dict}",
    ),
    WeightsEntry(
        name="arcface-ir-se50",
        filename="model_ir_se50.pth",
        description="ArcFace IR-SE50 face recognition (the identity network of pSp/e4e), 112 px input",
        licence="MIT (facexlib; the model comes from TreB1eN/InsightFace_Pytorch, MIT, as facexlib states)",
        size=175_367_323,
        sha256="a035c768259b98ab1ce0e646312f48b9e1e218197a0f80ac6765e88f8b6ddf28",
        url=f"{_GITHUB}/xinntao/facexlib/releases/download/v0.1.0/recognition_arcface_ir_se50.pth",
        layout="IR-SE50 backbone state dict (input_layer.*, body.*, output_layer.*)",
    ),
    WeightsEntry(
        name="arcface-w600k-r50",
        filename="w600k_r50.onnx",
        description="insightface ArcFace ResNet-50 trained on WebFace600K (buffalo_l), ONNX, 112 px input",
        licence="insightface pretrained models: non-commercial research purposes only",
        size=174_383_860,
        sha256="4c06341c33c2ca1f86781dab0e829f88ad5b64be9fba56e56bc9ebdefc619e43",
        url=f"{_GITHUB}/yakhyo/uniface/releases/download/weights/w600k_r50.onnx",
        layout="ONNX graph, input [N, 3, 112, 112], output [N, 512]",
    ),
    # The official styles: Hugging Face copies where the JoJoGAN Space uses them, otherwise only the Drive ids
    # of the original notebook (printed for a manual download, or served by a mirror).
    _style("arcane_caitlyn", drive_id="1gOsDTiTPcENiFOrhmkkxJcTURykW1dRc"),
    _style(
        "arcane_caitlyn_preserve_color",
        hf_repo="akhaliq/jojogan-arcane",
        drive_id="1cUTyjU-q98P75a8THCaO545RTwpVV-aH",
    ),
    _style("arcane_jinx", drive_id="1quQ8vPjYpUiXM4k1_KIwP4EccOefPpG_"),
    _style(
        "arcane_jinx_preserve_color",
        hf_repo="akhaliq/jojo-gan-jinx",
        drive_id="1jElwHxaYPod5Itdy18izJk49K1nl4ney",
    ),
    _style("arcane_multi", drive_id="15V9s09sgaw-zhKp116VHigf5FowAy43f"),
    _style(
        "arcane_multi_preserve_color",
        hf_repo="akhaliq/jojogan-arcane",
        drive_id="1enJgrC08NpWpx2XGBmLt1laimjpGCyfl",
    ),
    _style("disney", drive_id="1zbE2upakFUAx8ximYnLofFwfT8MilqJA"),
    _style(
        "disney_preserve_color",
        hf_repo="akhaliq/jojogan-disney",
        drive_id="1Bnh02DjfvN_Wm8c4JdOiNV4q9J7Z_tsi",
    ),
    _style("jojo", drive_id="13cR2xjIBj8Ga5jMO7gtxzIJj2PDsBYK4"),
    _style(
        "jojo_preserve_color",
        hf_repo="akhaliq/JoJoGAN-jojo",
        drive_id="1ZRwYLRytCEKi__eT2Zxv1IlV6BGVQ_K2",
        sha256="405cead5eb4693c81ebadb572a7bc95a723456b3661fe49befcdc7d8a549cf04",
    ),
    _style("jojo_yasuho", drive_id="1grZT3Gz1DLzFoJchAmoj3LoM9ew9ROX_"),
    _style(
        "jojo_yasuho_preserve_color",
        hf_repo="akhaliq/JoJoGAN-jojo",
        drive_id="1SKBu1h0iRNyeKBnya_3BBmLr4pkPeg_L",
    ),
    _style(
        "art",
        hf_repo="akhaliq/jojo-gan-art",
        drive_id="1a0QDEHwXQ6hE_FcYEyNMuv5r5UnRQLKT",
        sha256="653a1d290f23c5d2c42532d09fa83d9c07500abd9ce469e7f560263a7d9c8641",
    ),
    _style("sketch_multi", drive_id="1GdaeHGBGjBAFsWipTL0y-ssUiAqk8AxD"),
    _style("supergirl", drive_id="1L0y9IYgzLNzB-33xTpXpecsKU-t9DpVC"),
    _style("supergirl_preserve_color", drive_id="1VmKGuvThWHym7YuayXxjv0fSn32lfDpE"),
    # LPIPS backbones: torchvision's ImageNet checkpoints, at torchvision's own URLs.
    WeightsEntry(
        name="vgg16",
        filename="vgg16-397923af.pth",
        description="torchvision VGG16 ImageNet weights (the LPIPS 'vgg' backbone)",
        licence=_TORCHVISION_LICENCE,
        sha256_prefix="397923af",
        max_size=700_000_000,  # torchvision publishes no size; the file is about 528 MiB
        url="https://download.pytorch.org/models/vgg16-397923af.pth",
        layout="torchvision VGG16 state dict (features.*, classifier.*)",
    ),
    WeightsEntry(
        name="alexnet",
        filename="alexnet-owt-7be5be79.pth",
        description="torchvision AlexNet ImageNet weights (the LPIPS 'alex' backbone)",
        licence=_TORCHVISION_LICENCE,
        sha256_prefix="7be5be79",
        max_size=350_000_000,  # torchvision publishes no size; the file is about 233 MiB
        url="https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",
        layout="torchvision AlexNet state dict (features.*, classifier.*)",
    ),
    *_NVIDIA_ROWS,
)

REGISTRY: dict[str, WeightsEntry] = {row.name: row for row in _ROWS}
"""Every known file by registry name (the one table the README documents)."""


# ---------------------------------------------------------------------------------------------- environment
def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


def cache_dir() -> Path:
    """The weights cache: ``$JOJOGAN_HOME`` or ``~/.cache/jojogan``."""
    return home_dir()


def is_offline() -> bool:
    """``JOJOGAN_OFFLINE=1`` or ``HF_HUB_OFFLINE=1``: never touch the network."""
    return _env_flag("JOJOGAN_OFFLINE") or _env_flag("HF_HUB_OFFLINE")


def mirror_url() -> str | None:
    """``$JOJOGAN_WEIGHTS_MIRROR`` without a trailing slash, or ``None``."""
    base = os.environ.get("JOJOGAN_WEIGHTS_MIRROR", "").strip()
    return base.rstrip("/") or None


# ---------------------------------------------------------------------------------------------- lookups
def find_entry(spec: str | os.PathLike) -> WeightsEntry | None:
    """The registry row named ``spec`` by registry name or by file name, else ``None``."""
    key = str(spec)
    if key in REGISTRY:
        return REGISTRY[key]
    return next((row for row in REGISTRY.values() if row.filename == key), None)


def official_styles() -> list[WeightsEntry]:
    """The registry rows of the official JoJoGAN style files (``arcane_caitlyn``, ``jojo``, ...), in registry
    order."""
    return [row for row in REGISTRY.values() if row.licence == _STYLE_LICENCE]


def get_entry(spec: str) -> WeightsEntry:
    """Like :func:`find_entry` but raises :class:`WeightsError` listing the known names."""
    row = find_entry(spec)
    if row is None:
        raise WeightsError(f"unknown weights {spec!r}; known names: {', '.join(REGISTRY)}")
    return row


def cached_path(entry: WeightsEntry) -> Path:
    """Where ``entry`` lives in the cache (whether or not it is there)."""
    return cache_dir() / entry.filename


def _meta_path(entry: WeightsEntry) -> Path:
    return cache_dir() / ".meta" / f"{entry.filename}.json"


def _lock_path(entry: WeightsEntry) -> Path:
    return cache_dir() / ".locks" / f"{entry.filename}.lock"


def _staging_dir() -> Path:
    return cache_dir() / ".incomplete"


def format_size(size: int | None) -> str:
    """``381462551`` → ``"381.5 MB"``; ``None`` → ``"?"``."""
    if size is None:
        return "?"
    value = float(size)
    for unit in ("B", "kB", "MB"):
        if value < 1000:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} GB"


# ---------------------------------------------------------------------------------------------- cache state
CacheState = Literal["missing", "verified", "unverified", "corrupt"]


@dataclass(frozen=True)
class CacheStatus:
    """What the cache holds for one registry row.

    Attributes:
        entry: the row.
        path: where the file is (or would be).
        state: ``missing``; ``verified`` (sha256, or its published prefix, matches the registry);
            ``unverified`` (registry has no sha256; the file matches the hash pinned at its first download
            or first check); ``corrupt``
            (wrong size or sha256: it will be replaced, never loaded).
        detail: why it is corrupt, or the pinned sha256 of an unverified file.
    """

    entry: WeightsEntry
    path: Path
    state: CacheState
    detail: str = ""

    @property
    def usable(self) -> bool:
        return self.state in ("verified", "unverified")


def _read_meta(entry: WeightsEntry) -> dict | None:
    try:
        record = json.loads(_meta_path(entry).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def _write_meta(entry: WeightsEntry, path: Path, sha256: str) -> None:
    """Record the file's size, time and sha256; a cache folder that cannot take the record (read-only)
    only costs a hash next time."""
    stat = path.stat()
    record = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": sha256}
    meta = _meta_path(entry)
    tmp = meta.with_name(f"{meta.name}.{os.getpid()}.tmp")
    try:
        meta.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(record))
        os.replace(tmp, meta)
    except OSError as error:
        log.debug("cannot record the sha256 of %s in %s: %s", path, meta, error)
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)


def _size_problem(entry: WeightsEntry, size: int) -> str | None:
    """Why ``size`` cannot be ``entry``'s file, or ``None``."""
    if entry.size is not None and size != entry.size:
        return f"size {size:,} bytes, expected {entry.size:,}"
    if (
        entry.approx_size is not None
        and abs(size - entry.approx_size) > _APPROX_TOLERANCE * entry.approx_size
    ):
        return f"size {size:,} bytes, expected about {entry.approx_size:,}"
    return None


def check_cached(entry: WeightsEntry, *, rehash: bool = False) -> CacheStatus:
    """Check the cached copy of ``entry`` without touching the network.

    The size is always compared; the sha256 is computed when the file has no record yet, when it changed
    since its record was written (size or modification time), or when ``rehash`` is set.

    Args:
        entry: the registry row.
        rehash: hash the file even when its record says it is unchanged (``jojogan weights verify``).
    """
    path = cached_path(entry)
    if not path.is_file():
        return CacheStatus(entry, path, "missing")
    stat = path.stat()
    problem = _size_problem(entry, stat.st_size)
    if problem:
        return CacheStatus(entry, path, "corrupt", problem)
    record = _read_meta(entry)
    unchanged = bool(record) and (record.get("size"), record.get("mtime_ns")) == (
        stat.st_size,
        stat.st_mtime_ns,
    )
    actual = record["sha256"] if unchanged and not rehash else file_sha256(path)
    expected = entry.sha256 or (record or {}).get("sha256")
    if expected is not None and actual != expected:
        source = "the registry" if entry.sha256 else "its first download"
        return CacheStatus(entry, path, "corrupt", f"sha256 {actual}, expected {expected} ({source})")
    if entry.sha256_prefix and not actual.startswith(entry.sha256_prefix):
        return CacheStatus(
            entry, path, "corrupt", f"sha256 {actual} does not start with {entry.sha256_prefix}"
        )
    if not unchanged:
        _write_meta(entry, path, actual)
    if entry.sha256 or entry.sha256_prefix:
        return CacheStatus(entry, path, "verified")
    return CacheStatus(entry, path, "unverified", f"sha256 {actual} pinned locally")


# ---------------------------------------------------------------------------------------------- downloads
def _sources(entry: WeightsEntry) -> list[tuple[str, str]]:
    """``(kind, url)`` to try in order: the mirror alone when set, else Hugging Face then the plain URL."""
    mirror = mirror_url()
    if mirror is not None:
        return [("url", f"{mirror}/{entry.filename}")]
    found = []
    if entry.hf_repo:
        found.append(("hf", entry.hf_url))
    if entry.url:
        found.append(("url", entry.url))
    return found


def _manual_hint(entry: WeightsEntry) -> str:
    """The sentence telling a user how to get the file by hand."""
    urls = [url for _, url in _sources(entry)]
    if mirror_url() is None and entry.drive_url:
        urls.append(entry.drive_url)
    where = cached_path(entry)
    if not urls:
        return f"put {entry.filename} at {where}"
    also = f" (or {', '.join(urls[1:])})" if len(urls) > 1 else ""
    return f"fetch {urls[0]}{also} by hand and put it at {where}"


class _ShortRead(Exception):
    """The server closed the connection before the announced length."""


class _WrongSize(ValueError):
    """A complete download whose size differs from the registry's."""


class _RangeDownloader:
    """A pooch downloader that resumes with HTTP ``Range`` from a partial file that outlives the process.

    pooch hands it a temporary output file and, after it returns, checks the sha256 and moves the result;
    the bytes themselves accumulate in ``partial`` so that a dropped connection or a killed process does not
    start again from zero. Within one call it retries as long as each attempt made progress.
    """

    def __init__(
        self,
        partial: Path,
        expected_size: int | None,
        progress: bool,
        limit: tuple[int, str],
        timeout: float = 30.0,
    ):
        self.partial = partial
        self.expected_size = expected_size
        self.progress = progress
        self.limit, self.why = limit
        self.timeout = timeout

    def __call__(self, url: str, output_file: str, pooch: object, check_only: bool = False) -> None:
        import requests

        if check_only:
            return None
        self.partial.parent.mkdir(parents=True, exist_ok=True)
        dropped = (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError)
        while True:
            before = self._have()
            try:
                self._fetch(url, before)
                break
            except (*dropped, _ShortRead) as error:
                after = self._have()
                if after <= before:
                    raise
                log.warning("the download of %s stopped at %s (%s); resuming", url, format_size(after), error)
        size = self._have()
        if self.expected_size is not None and size != self.expected_size:
            self.partial.unlink()
            raise _WrongSize(f"{size:,} bytes arrived, the registry expects {self.expected_size:,}")
        os.replace(self.partial, output_file)
        return None

    def _have(self) -> int:
        return self.partial.stat().st_size if self.partial.exists() else 0

    def _fetch(self, url: str, offset: int) -> None:
        import requests
        from tqdm.auto import tqdm

        if offset > min(self.expected_size or self.limit, self.limit):  # not the start of this file
            self.partial.unlink()
            offset = 0
        if self.expected_size is not None and offset == self.expected_size:
            return
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        with requests.get(url, headers=headers, stream=True, timeout=self.timeout) as response:
            if response.status_code == 416 and offset:
                # Nothing past our bytes: the partial file is the whole file (or junk the hash check rejects).
                return
            response.raise_for_status()
            if offset and response.status_code != 206:
                offset = 0  # the server ignored Range and sends the whole file
            length = response.headers.get("Content-Length")
            total = offset + int(length) if length is not None and length.isdigit() else self.expected_size
            if total is not None and total > self.limit:  # announced too large: not one byte read
                self.partial.unlink(missing_ok=True)
                raise _TooLarge(total, self.limit, f"{self.why}; the server announced {total:,}")
            with (
                open(self.partial, "ab" if offset else "wb") as handle,
                tqdm(
                    total=total,
                    initial=offset,
                    unit="B",
                    unit_scale=True,
                    unit_divisor=1024,
                    desc=self.partial.name.removesuffix(".part"),
                    disable=not self.progress,
                ) as bar,
            ):
                for block in response.iter_content(chunk_size=_NET_CHUNK):
                    offset += len(block)
                    if offset > self.limit:  # a server streaming without (or beyond) a length: stop here
                        handle.close()
                        self.partial.unlink(missing_ok=True)
                        raise _TooLarge(offset, self.limit, self.why)
                    handle.write(block)
                    bar.update(len(block))
        if total is not None and self._have() < total:
            raise _ShortRead(f"the connection closed after {self._have():,} of {total:,} bytes")


def _fetch_url(entry: WeightsEntry, url: str, staging: Path, progress: bool) -> Path:
    import pooch

    known = f"sha256:{entry.sha256}" if entry.sha256 else None
    downloader = _RangeDownloader(staging / f"{entry.filename}.part", entry.size, progress, byte_limit(entry))
    # pooch's own INFO line repeats ours; keep it out of the user's terminal.
    pooch.get_logger().setLevel(logging.WARNING)
    return Path(pooch.retrieve(url, known, fname=entry.filename, path=staging, downloader=downloader))


def _fetch_hf(entry: WeightsEntry, staging: Path) -> Path:
    from huggingface_hub import hf_hub_download

    # The hub client logs each of its retries as a warning; a failure ends in our one line that says what
    # was tried, so its chatter shows only when our own logger is at debug level (-vv).
    hub_logger = logging.getLogger("huggingface_hub")
    level = hub_logger.level
    if not log.isEnabledFor(logging.DEBUG):
        hub_logger.setLevel(logging.ERROR)
    try:
        bar = _bounded_bar(*byte_limit(entry))
        return Path(hf_hub_download(entry.hf_repo, entry.filename, local_dir=staging / "hf", tqdm_class=bar))
    finally:
        hub_logger.setLevel(level)


def _check_staged(entry: WeightsEntry, staged: Path, hashed: bool) -> str:
    """Size and sha256 of a finished download; raises ``ValueError`` naming the mismatch.

    ``hashed``: the downloader already compared the registry's sha256 (pooch does), so it is not read twice.
    """
    problem = _size_problem(entry, staged.stat().st_size)
    if problem:
        raise _WrongSize(f"the download has {problem}")
    if hashed and entry.sha256 is not None:
        return entry.sha256
    digest = file_sha256(staged)
    if entry.sha256 is not None and digest != entry.sha256:
        raise ValueError(f"SHA256 of the download is {digest}, the registry expects {entry.sha256}")
    if entry.sha256_prefix and not digest.startswith(entry.sha256_prefix):
        raise ValueError(f"SHA256 of the download is {digest}, the registry expects {entry.sha256_prefix}...")
    return digest


UNKNOWN_SIZE_CAP = 2_000_000_000
"""The most bytes a download may bring for a row with no size at all (more than any registry file)."""


def byte_limit(entry: WeightsEntry) -> tuple[int, str]:
    """The most bytes a download of ``entry`` may bring before it is stopped, and where that bound comes
    from: the registry's exact size, its approximate size plus the 1% tolerance, the row's own cap, or
    :data:`UNKNOWN_SIZE_CAP`."""
    if entry.size is not None:
        return entry.size, "the registry's size"
    if entry.approx_size is not None:
        return int(entry.approx_size * (1 + _APPROX_TOLERANCE)), "the registry's approximate size"
    if entry.max_size is not None:
        return entry.max_size, "the cap for this file, whose size is not published"
    return UNKNOWN_SIZE_CAP, "the cap for files of unknown size"


class _TooLarge(ValueError):
    """A download that brought (or announced) more bytes than its row allows; stopped, nothing kept."""

    def __init__(self, received: int, limit: int, why: str):
        super().__init__(f"the server sent more than {limit:,} bytes ({why}); stopped after {received:,}")


def _bounded_bar(limit: int, why: str):
    """A progress-bar class for the hub client that stops a download once it passes ``limit`` bytes (its
    bar sees every chunk; this counts them whether the bar shows or not)."""
    from huggingface_hub.utils import tqdm as hub_tqdm

    class Bounded(hub_tqdm):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.received = kwargs.get("initial", 0) or 0

        def update(self, n=1):
            self.received += n or 0
            if self.received > limit:
                raise _TooLarge(self.received, limit, why)
            return super().update(n)

    return Bounded


def _announced_size(entry: WeightsEntry) -> str:
    if entry.size is not None:
        return format_size(entry.size)
    return f"about {format_size(entry.approx_size)}" if entry.approx_size is not None else "size unknown"


def _short(error: BaseException) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) <= 300 else text[:297] + "..."


def _prepare_cache(*folders: Path) -> None:
    """Create the cache's working folders, or say in one line why the cache cannot take files."""
    for folder in folders:
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            reason = (
                "a file is in the way"
                if isinstance(error, (FileExistsError, NotADirectoryError))
                else (error.strerror or str(error))
            )
            raise WeightsError(
                f"the weights cache {cache_dir()} cannot take files ({reason}: {folder}); set JOJOGAN_HOME "
                "to a folder you can write, or download the file by hand"
            ) from error


def download(entry: WeightsEntry, *, progress: bool = True, force: bool = False) -> Path:
    """Fetch ``entry`` into the cache (see the module docstring for the design); return its path.

    Args:
        entry: the registry row.
        progress: show a progress bar (bytes, rate, time left).
        force: download even when a good copy is cached.

    Raises:
        WeightsOfflineError: offline mode is on.
        WeightsDownloadError: every source failed; the message names what was tried, the URL to fetch by
            hand and where to put the file. Nothing is left in the cache but resumable partial bytes in
            ``.incomplete``.
    """
    from filelock import FileLock

    if is_offline():
        raise WeightsOfflineError(
            f"{entry.filename} is not in the weights cache {cache_dir()} and downloads are off "
            f"(JOJOGAN_OFFLINE/HF_HUB_OFFLINE): {_manual_hint(entry)}"
        )
    target = cached_path(entry)
    staging = _staging_dir()
    _prepare_cache(staging, _lock_path(entry).parent)
    failures = []
    with FileLock(str(_lock_path(entry))):
        if not force:
            status = check_cached(entry)
            if status.usable:  # another process finished it while we waited for the lock
                return target
            if status.state == "corrupt":
                log.warning("replacing the damaged cached %s (%s)", entry.filename, status.detail)
        for kind, url in _sources(entry):
            log.info(
                "downloading %s (%s) from %s into %s", entry.filename, _announced_size(entry), url, target
            )
            staged = None
            try:
                staged = (
                    _fetch_hf(entry, staging) if kind == "hf" else _fetch_url(entry, url, staging, progress)
                )
                digest = _check_staged(entry, staged, hashed=kind == "url")
            except Exception as error:  # noqa: BLE001 - each source fails in its own way; try the next
                if staged is not None:
                    staged.unlink(missing_ok=True)
                failures.append(f"{url}: {_short(error)}")
                continue
            os.replace(staged, target)
            _write_meta(entry, target, digest)
            return target
    tried = "; ".join(failures) if failures else "no download source is known for it"
    raise WeightsDownloadError(
        f"{entry.filename} is not in the weights cache {cache_dir()} and could not be downloaded (tried "
        f"{tried}); {_manual_hint(entry)}"
    )


def ensure(entry: WeightsEntry, *, download_missing: bool = True, progress: bool = True) -> Path:
    """Return the cached path of ``entry``, downloading it (or replacing a damaged copy) when allowed.

    Raises:
        WeightsError: missing or damaged and not allowed (or not able) to download; says how to get it.
    """
    status = check_cached(entry)
    if status.usable:
        return status.path
    if download_missing and not is_offline():
        return download(entry, progress=progress, force=status.state == "corrupt")
    if status.state == "corrupt":
        raise WeightsError(
            f"the cached {entry.filename} is damaged ({status.detail}) and is not loaded; run "
            f"`jojogan weights download {entry.name}` to replace it, or {_manual_hint(entry)}"
        )
    reason = " and downloads are off (JOJOGAN_OFFLINE/HF_HUB_OFFLINE)" if is_offline() else ""
    raise WeightsError(
        f"{entry.filename} ({entry.description}) is not in the weights cache {cache_dir()}{reason}. "
        f"Run `jojogan weights download {entry.name}`, or {_manual_hint(entry)}, or pass the path of any "
        f"file in the same layout ({entry.layout})."
    )


def resolve_weights(
    spec: str | os.PathLike | None,
    default: str | None = None,
    *,
    download: bool = False,
    progress: bool = True,
) -> Path:
    """Find a weights file: the one entry point the API calls for ``--base``, ``--e4e`` and the rest.

    Args:
        spec: a path to an existing file, a registry name (``"ffhq"``), a registry file name
            (``"stylegan2-ffhq-config-f.pt"``), or ``None`` for ``default``. An existing file wins over a
            registry name.
        default: registry name used when ``spec`` is ``None``.
        download: fetch a missing or damaged registry file (first use). ``False`` only looks in the cache,
            which is what an optional probe wants (e.g. "use e4e if it is there").
        progress: progress bar while downloading.

    Returns:
        An existing file; a registry file's size and sha256 have been checked.

    Raises:
        WeightsError: the file is missing and may not be downloaded, or is damaged; the message says where
            it was looked for and how to get it.
        WeightsDownloadError: the download failed (one line: what was tried, what to do by hand).
        CheckpointError: ``spec`` is neither an existing file nor a registry name.
    """
    if spec is None:
        if default is None:
            raise WeightsError("no weights named: pass a path or a registry name")
        spec = default
    path = Path(spec).expanduser()
    if path.is_file():
        return path
    entry = find_entry(spec)
    if entry is None:
        raise CheckpointError(
            f"weights file not found: {path} (and {str(spec)!r} is no registry name; known: "
            f"{', '.join(REGISTRY)})"
        )
    return ensure(entry, download_missing=download, progress=progress)


# ---------------------------------------------------------------------------------------------- checkpoints
_FFHQ = REGISTRY["ffhq"]


def generator_only_error(path: str | os.PathLike, purpose: str = "fine-tuning") -> GeneratorOnlyError:
    """The error for a base checkpoint without a discriminator where ``purpose`` needs one.

    The usual cause is a 133 MB ``stylegan2-ffhq-config-f.pt`` that holds only ``g_ema``; the message names
    the full file and how to get it.
    """
    path = Path(path)
    size = path.stat().st_size if path.is_file() else None
    # The generator-only copies circulate under the full file's name; say so when the size gives it away.
    looks_like = (
        f" ({format_size(size)}, a generator-only file)"
        if size is not None and size < _FFHQ.size // 2
        else ""
    )
    return GeneratorOnlyError(
        f"{path.name}{looks_like} has no discriminator ('d'), which {purpose} needs. Use the full "
        f"{_FFHQ.filename} ({_FFHQ.size:,} bytes, sha256 {_FFHQ.sha256[:12]}...) with g_ema, d and "
        f"latent_avg: --base {_FFHQ.name} downloads it (`jojogan weights download {_FFHQ.name}`)."
    )
