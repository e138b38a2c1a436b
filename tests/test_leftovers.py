"""Nothing is left beside an output by a failed run: the finetune lock lives in the cache's lock folder."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner
from PIL import Image

from jojogan.cli import main as cli
from jojogan.cli.finetune import finetune_lock_path


def test_a_failed_first_finetune_leaves_nothing_beside_its_output(tmp_path, monkeypatch):
    """Offline with an empty cache, the first finetune cannot fetch the base weights: it fails in one line,
    and the output's folder holds nothing (it used to keep OUTPUT.lock)."""
    home, out = tmp_path / "home", tmp_path / "out"
    monkeypatch.setenv("JOJOGAN_HOME", str(home))
    out.mkdir()
    reference = tmp_path / "ref.png"
    Image.new("RGB", (64, 64), (150, 120, 100)).save(reference)
    output = out / "style.safetensors"
    result = CliRunner().invoke(cli, ["finetune", str(reference), "--aligned", "-o", str(output)])
    assert result.exit_code == 1, result.output
    assert "not in the weights cache" in result.output and "Traceback" not in result.output
    assert list(out.iterdir()) == []
    lock = finetune_lock_path(output)
    assert lock.parent == home / ".locks" and lock.is_file()  # where the run held it


def test_the_lock_is_one_per_output_path(tmp_path, monkeypatch):
    monkeypatch.setenv("JOJOGAN_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    first = finetune_lock_path(tmp_path / "a" / "s.safetensors")
    assert first == finetune_lock_path(tmp_path / "a" / ".." / "a" / "s.safetensors")
    assert first == finetune_lock_path(Path("a/s.safetensors"))  # relative to the working folder
    assert first != finetune_lock_path(tmp_path / "b" / "s.safetensors")
