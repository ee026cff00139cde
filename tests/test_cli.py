"""densevision.cli: one error line and exit 2 for expected failures, a logged traceback for bugs, and every tool
runs through the wrapper."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

import densevision  # noqa: F401  (environment first)

from densevision.cli import run_tool
from densevision.data.errors import DatasetError


ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.usefixtures("private_cache")
def test_cli_exit_codes_messages_and_log(tmp_path, capsys, private_cache):
    def fine(argv):
        print("done")

    def expected(argv):
        raise DatasetError("data/x.png: truncated")

    def disk(argv):
        raise OSError(errno.ENOSPC, "No space left on device", "out/big.npz")

    def bug(argv):
        return {}["missing"]

    def interrupted(argv):
        raise KeyboardInterrupt

    assert run_tool(fine, []) == 0
    assert run_tool(lambda argv: 3, []) == 3
    assert run_tool(expected, []) == 2
    assert capsys.readouterr().err == "error: data/x.png: truncated\n"
    assert run_tool(disk, []) == 2
    assert capsys.readouterr().err == "error: out/big.npz: the disk is full\n"
    assert run_tool(interrupted, []) == 130
    assert capsys.readouterr().err == "interrupted\n"
    assert run_tool(bug, ["--flag"], tool="mytool") == 1
    err = capsys.readouterr().err
    assert err.startswith("error: unexpected KeyError: 'missing' (full traceback in ")
    assert err.rstrip().endswith("rerun with --debug to see it)") and "Traceback" not in err
    [log] = (private_cache / "logs").glob("mytool-*.log")
    assert str(log) in err
    text = log.read_text()
    assert "command: mytool --flag" in text and "Traceback" in text and "{}[\"missing\"]" in text
    with pytest.raises(KeyError):
        run_tool(bug, ["--debug"])
    with pytest.raises(DatasetError):
        run_tool(expected, ["--debug"])


@pytest.mark.usefixtures("private_cache")
def test_every_tool_uses_the_wrapper():
    """tools/X.py are aliases of ``densevision X``, which runs every command through run_tool with --debug."""
    from densevision.commands import COMMANDS, command_module

    for name in ("train", "summarize", "plot_history", "sliding_classify"):
        text = (ROOT / "tools" / f"{name}.py").read_text()
        assert "from densevision.commands import alias" in text, name
    for name in COMMANDS:
        flags = {flag for action in command_module(name).build_parser()._actions for flag in action.option_strings}
        assert "--debug" in flags, name
    assert "run_tool(" in (ROOT / "densevision" / "commands" / "__init__.py").read_text()
