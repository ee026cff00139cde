"""densevision.progress: plain lines every N steps when redirected, a bar on a terminal unless disabled."""

from __future__ import annotations

import io

from densevision.progress import PlainProgress, progress_bar


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_redirected_progress_writes_plain_lines_every_n(monkeypatch):
    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    log = io.StringIO()
    bar = progress_bar(range(7), enabled=True, every=3, desc="predict", unit="image", file=log)
    assert isinstance(bar, PlainProgress)
    assert list(bar) == list(range(7))
    lines = log.getvalue().splitlines()
    assert "\r" not in log.getvalue()
    assert [line.split(" (")[0] for line in lines] == ["predict: 3/7 image", "predict: 6/7 image", "predict: 7/7 image"]
    quiet = io.StringIO()
    for _ in progress_bar(range(5), every=0, file=quiet):  # the trainer's choice: its epoch line is the log
        pass
    assert quiet.getvalue() == ""


def test_terminal_gets_a_bar_unless_tqdm_disable_or_no_progress(monkeypatch):
    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    screen = Terminal()
    for _ in progress_bar(range(3), file=screen, desc="epoch"):
        pass
    assert "\r" in screen.getvalue() and "3/3" in screen.getvalue()
    for env, enabled in (("1", True), (None, False)):
        if env:
            monkeypatch.setenv("TQDM_DISABLE", env)
        screen = Terminal()
        for _ in progress_bar(range(3), file=screen, enabled=enabled, every=1):
            pass
        assert screen.getvalue() == "", (env, enabled)
