"""Issue 23: the one output rule (``jojogan.fileio.claim_outputs``) and writes that leave nothing behind.

Faults the machine cannot produce for a test (a read-only or full file system; as root, permissions do not
bind) are injected where the system call happens, with the errno the kernel gives.
"""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from jojogan import fileio
from jojogan.fileio import OutputError, atomic_output, claim_outputs, remove_stale_temporaries


@pytest.fixture
def files(tmp_path):
    (tmp_path / "in.png").write_bytes(b"input")
    (tmp_path / "old.png").write_bytes(b"old output")
    return tmp_path


def test_an_output_is_never_an_input_by_path_symlink_or_hard_link(files):
    source = files / "in.png"
    (files / "link.png").symlink_to(source)
    os.link(source, files / "hard.png")
    for output in (source, files / "sub" / ".." / "in.png", files / "link.png", files / "hard.png"):
        with pytest.raises(OutputError, match="also an input"):
            claim_outputs([source], [output], force=True)
    assert source.read_bytes() == b"input"


def test_an_existing_output_needs_force_and_two_outputs_are_never_one_file(files):
    with pytest.raises(OutputError, match=r"old.png exists; pass --force"):
        claim_outputs([files / "in.png"], [files / "old.png"], force=False)
    claim_outputs([files / "in.png"], [files / "old.png"], force=True)
    with pytest.raises(OutputError, match="two outputs"):
        claim_outputs([], [files / "new.png", files / "x" / ".." / "new.png"], force=True)
    with pytest.raises(OutputError, match="is a folder"):
        claim_outputs([], [files], force=True)


def test_an_output_under_a_file_or_with_a_too_long_name_is_one_line(files):
    with pytest.raises(OutputError, match=r"in.png is a file, not a folder"):
        claim_outputs([], [files / "in.png" / "x.png"], force=False)
    with pytest.raises(OutputError, match="has 300 characters, this file system allows 255"):
        claim_outputs([], [files / ("a" * 300) / "x.png"], force=False)
    with pytest.raises(OutputError, match="has 256 characters"):
        claim_outputs([], [files / ("b" * 252 + ".png")], force=False)
    # a name that fits is written, although its temporary name would not fit unshortened
    target = files / ("c" * 250 + ".png")
    claim_outputs([], [target], force=False)
    with atomic_output(target) as tmp:
        tmp.write_bytes(b"ok")
    assert target.read_bytes() == b"ok"


def test_a_folder_for_previews_that_is_a_file_is_refused(files):
    with pytest.raises(OutputError, match=r"in.png is a file; it is where this command writes files"):
        claim_outputs([], [files / "out.safetensors"], force=False, folders=[files / "in.png"])


def _refuse(monkeypatch, code: int, marker: str = fileio.TEMP_SUFFIX):
    """Make creating files whose name ends with ``marker`` fail with ``code`` (as the kernel would)."""
    real = os.open

    def failing(path, flags, *args, **kwargs):
        if str(path).endswith(marker):
            raise OSError(code, os.strerror(code), str(path))
        return real(path, flags, *args, **kwargs)

    monkeypatch.setattr(fileio.os, "open", failing)


@pytest.mark.parametrize(
    ("code", "reason"),
    [(errno.EROFS, "read-only"), (errno.EACCES, "permission denied"), (errno.ENOSPC, "no space")],
)
def test_a_folder_that_cannot_take_files_is_refused_before_any_work(files, monkeypatch, code, reason):
    _refuse(monkeypatch, code)
    with pytest.raises(OutputError, match=reason) as refused:
        claim_outputs([], [files / "new" / "out.png"], force=False)
    assert str(files) in str(refused.value) and "\n" not in str(refused.value)
    assert not (files / "new").exists()  # nothing created by the check


def test_a_full_disk_during_torch_save_is_a_clear_line(files, monkeypatch):
    """torch.save reports a failed write as a RuntimeError from its C++ writer ("enforce fail ...")."""

    def fail(*args, **kwargs):
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 64 vs 0")

    monkeypatch.setattr(torch, "save", fail)
    monkeypatch.setattr(fileio, "_disk_full", lambda folder: True)
    with pytest.raises(OutputError, match=r"could not write .*state.pt: no space is left"):
        with atomic_output(files / "state.pt") as tmp:
            torch.save({"x": 1}, tmp)
    assert sorted(p.name for p in files.iterdir()) == ["in.png", "old.png"]  # no temporary file left


def test_other_runtime_errors_inside_a_write_are_not_disguised(files):
    with pytest.raises(RuntimeError, match="a model error"):
        with atomic_output(files / "x.png"):
            raise RuntimeError("a model error")


def test_a_killed_write_leaves_a_temporary_file_that_the_next_write_removes(files):
    """A process killed (SIGKILL) inside atomic_output leaves its .jojogan.tmp; the next write of the same
    target, or of a file named after it (OUT.resume.pt for OUT), removes it."""
    target = files / "style.safetensors"
    code = (
        "import os, sys\nfrom jojogan.fileio import atomic_output\n"
        f"with atomic_output({str(target) + '.resume.pt'!r}) as tmp:\n"
        "    tmp.write_bytes(b'half')\n    os.kill(os.getpid(), 9)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=False, timeout=60)
    left = [p for p in files.iterdir() if p.name.endswith(fileio.TEMP_SUFFIX)]
    assert len(left) == 1 and left[0].name.startswith(".style.safetensors.resume.pt."), left
    claim_outputs([], [target], force=False)  # the next run claims its output: the stale file goes
    assert not left[0].exists()
    # a temporary file of a live process (this one) is never touched
    with atomic_output(target) as tmp:
        assert remove_stale_temporaries(target) == [] and tmp.exists()
        tmp.write_bytes(b"whole")
    assert target.read_bytes() == b"whole"


def test_a_read_only_target_folder_at_write_time_names_the_reason(files, monkeypatch):
    _refuse(monkeypatch, errno.EROFS)
    with pytest.raises(OutputError, match=r"could not write .*out.png: the file system is read-only"):
        with atomic_output(files / "out.png") as tmp:
            Path(tmp).write_bytes(b"x")
