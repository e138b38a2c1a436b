"""Nothing is left beside an output by a failed run: the finetune lock lives in the cache's lock folder."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner
from PIL import Image

from jojogan.cli import main as cli
from jojogan.cli.finetune import finetune_lock_path


def test_a_failed_first_finetune_leaves_nothing_beside_its_output(tmp_path, monkeypatch):
    """Offline with an empty cache, the first finetune cannot fetch the base weights: it fails in one line,
    and the output's folder holds nothing (it used to keep OUTPUT.lock). The lock was held in the cache's
    lock folder while the run went on, and is gone with it (the folder used to keep one per output)."""
    from jojogan import weights

    home, out = tmp_path / "home", tmp_path / "out"
    monkeypatch.setenv("JOJOGAN_HOME", str(home))
    out.mkdir()
    reference = tmp_path / "ref.png"
    Image.new("RGB", (64, 64), (150, 120, 100)).save(reference)
    output = out / "style.safetensors"
    lock = finetune_lock_path(output)
    held = []
    offline = weights.is_offline
    monkeypatch.setattr(weights, "is_offline", lambda: held.append(lock.is_file()) or offline())
    result = CliRunner().invoke(cli, ["finetune", str(reference), "--aligned", "-o", str(output)])
    assert result.exit_code == 1, result.output
    assert "not in the weights cache" in result.output and "Traceback" not in result.output
    assert list(out.iterdir()) == []
    assert lock.parent == home / ".locks" and held and all(held)  # where it was held, while the run went on
    assert list(lock.parent.iterdir()) == []


def test_a_run_that_opened_the_lock_file_as_it_was_removed_does_not_take_it(tmp_path, monkeypatch):
    """The finetune lock's file is removed while held. A second run that opened it just before gets the
    lock of a file no longer in the folder once the first lets go: filelock must discard it and lock the file
    at the path, or a third run could lock a new file there at the same time."""
    import fcntl

    from filelock import FileLock, Timeout

    path = tmp_path / "finetune.lock"
    holder = FileLock(str(path), timeout=0)
    holder.acquire()
    flock, ends = fcntl.flock, []

    def first_run_ends_between_open_and_flock(fd, operation):
        if operation & fcntl.LOCK_EX and not ends:  # the second run has opened the file: the first ends
            ends.append(path.is_file())
            path.unlink()  # as jojogan finetune's lock does, while still held
            holder.release()
        return flock(fd, operation)

    monkeypatch.setattr(fcntl, "flock", first_run_ends_between_open_and_flock)
    second = FileLock(str(path), timeout=2)
    second.acquire()
    monkeypatch.undo()
    try:
        assert ends == [True] and path.is_file()  # the second run holds a file at the path
        try:
            FileLock(str(path), timeout=0).acquire()
        except Timeout:
            pass
        else:
            raise AssertionError("a third run locked the output while the second held it")
    finally:
        second.release()


def test_the_lock_is_one_per_output_path(tmp_path, monkeypatch):
    monkeypatch.setenv("JOJOGAN_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    first = finetune_lock_path(tmp_path / "a" / "s.safetensors")
    assert first == finetune_lock_path(tmp_path / "a" / ".." / "a" / "s.safetensors")
    assert first == finetune_lock_path(Path("a/s.safetensors"))  # relative to the working folder
    assert first != finetune_lock_path(tmp_path / "b" / "s.safetensors")
