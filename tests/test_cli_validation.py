"""Issue 11, item 3: every option is checked by its type while parsing (before any model loads), and the
CLI turns anything unexpected into one line (the traceback only with -v)."""

from __future__ import annotations

import pytest
import torch
from click.testing import CliRunner

from jojogan.cli import main

MISSING_BASE = "no-such-base.pt"  # loading it would fail: a parse-time refusal never gets that far


def run(args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


@pytest.mark.parametrize(
    ("args", "option", "expected"),
    [
        (["finetune", "r.png", "-o", "s.safetensors", "--lr", "nan"], "--lr", "not a finite number"),
        (["finetune", "r.png", "-o", "s.safetensors", "--lr", "inf"], "--lr", "not a finite number"),
        (["finetune", "r.png", "-o", "s.safetensors", "--mix-strength", "nan"], "--mix-strength", "finite"),
        (
            ["finetune", "r.png", "-o", "s.safetensors", "--identity-weight", "inf"],
            "--identity-weight",
            "finite",
        ),
        (["finetune", "r.png", "-o", "s.safetensors", "--seed", "99999999999999999999"], "--seed", "range"),
        (["finetune", "r.png", "-o", "s.safetensors", "--preset", "nope"], "--preset", "nope"),
        (["finetune", "r.png", "-o", "style.pt"], "--output", ".safetensors"),
        (
            ["sample", "--style", "s.safetensors", "-o", "g.png", "--truncation", "nan"],
            "--truncation",
            "finite",
        ),
        (["sample", "--style", "s.safetensors", "-o", "grid.png", "--seed", "-1"], "--seed", "range"),
        (["sample", "--style", "s.safetensors", "-o", "grid"], "--output", "image suffix"),
        (["sample", "--style", "s.safetensors", "-o", "grid.txt"], "--output", "image suffix"),
        (["slider", "p.png", "--style", "s.safetensors", "-o", "a.png", "--gif", "a.png"], "--gif", ".gif"),
        (["invert", "p.png", "-o", "codes.npy"], "--output", ".safetensors, .pt"),
        (["stylize", "p.png", "--style", "s.safetensors", "-o", "o.txt"], "--output", "or a folder"),
        (
            ["stylize", "p.png", "--style", "s.safetensors", "-o", "o.png", "--device", "gpu0"],
            "--device",
            "gpu0",
        ),
        (
            ["stylize", "p.png", "--style", "s.safetensors", "-o", "o.png", "--device", "tpu"],
            "--device",
            "tpu",
        ),
    ],
)
def test_bad_values_are_refused_while_parsing(tmp_path, args, option, expected):
    result = run([*args, "--base", tmp_path / MISSING_BASE] if args[0] != "sample" else args)
    assert result.exit_code == 2, result.output
    assert option in result.output and expected in result.output, result.output
    assert "Traceback" not in result.output
    assert MISSING_BASE not in result.output  # no model was looked for


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_a_device_that_is_not_here_is_refused_with_the_alternatives():
    result = run(["sample", "--style", "s.safetensors", "-o", "g.png", "--device", "cuda"])
    assert result.exit_code == 2 and "no CUDA device" in result.output and "use cpu or auto" in result.output


def test_good_values_parse(tmp_path):
    """The same types accept what they should: the command goes on to look for the (missing) base."""
    base = tmp_path / MISSING_BASE
    reference = tmp_path / "r.png"
    reference.write_bytes(b"")  # exists: the inputs are checked before the base
    args = ["finetune", reference, "-o", tmp_path / "s.safetensors", "--lr", "1e-3", "--seed", str(2**64 - 1)]
    result = run([*args, "--mix-strength", "0.5", "--device", "cpu", "--base", base])
    assert result.exit_code == 1 and MISSING_BASE in result.output, result.output


def test_an_unexpected_error_is_one_line_and_the_traceback_needs_verbose(monkeypatch, tmp_path):
    import jojogan.cli.env as env_module

    def broken():
        raise RuntimeError("something nobody foresaw")

    monkeypatch.setattr(env_module, "environment_report", broken)
    result = run(["env"])
    assert result.exit_code == 1
    assert result.output.strip() == (
        "Error: unexpected RuntimeError: something nobody foresaw (rerun with -v for details)"
    )
    verbose = run(["-v", "env"])
    assert verbose.exit_code == 1
    assert "Traceback" in verbose.output and "in broken" in verbose.output
    assert verbose.output.rstrip().endswith("Error: unexpected RuntimeError: something nobody foresaw")


def test_finetune_options_follow_the_config():
    """Every FinetuneConfig setting on the command line defaults to the config's own value (the CLI saves
    a resume state every 25 steps on purpose), and a config built from the defaults is the default config."""
    import dataclasses

    from jojogan.cli._options import config_from_options
    from jojogan.cli.finetune import CLI_DEFAULTS, FINETUNE_OPTIONS
    from jojogan.cli.finetune import finetune as command
    from jojogan.config import FinetuneConfig

    params = {p.name: p for p in command.params}
    defaults = {f.name: f.default for f in dataclasses.fields(FinetuneConfig)}
    for name in FINETUNE_OPTIONS:
        assert params[name].default == CLI_DEFAULTS.get(name, defaults[name]), name
    built = config_from_options(FinetuneConfig, {name: params[name].default for name in FINETUNE_OPTIONS})
    assert built == dataclasses.replace(FinetuneConfig(), **CLI_DEFAULTS)
