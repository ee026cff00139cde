"""densevision plot (tools/plot_history.py): an existing picture is replaced only with --overwrite."""

from __future__ import annotations

import pytest

import densevision  # noqa: F401  (environment first)

from engine_utils import load_tool_main


@pytest.mark.usefixtures("private_cache")
def test_plot_history_refuses_to_replace_without_overwrite(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "history.csv").write_text("epoch,loss,val_loss,lr\n0,1.0,1.1,0.001\n1,0.8,0.9,0.001\n")
    (run / "history.png").write_bytes(b"keep me")
    main = load_tool_main("plot_history")
    assert main([str(run)]) == 2
    assert "already exists; pass --overwrite" in capsys.readouterr().err
    assert (run / "history.png").read_bytes() == b"keep me"
    assert main([str(run), "--overwrite"]) == 0
    assert (run / "history.png").read_bytes()[:4] == b"\x89PNG"
    assert main([str(tmp_path)]) == 2 and "is " in capsys.readouterr().err
