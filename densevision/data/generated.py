"""Generated (demo) datasets are written once: a marker file, written last, records the generator's settings."""

from __future__ import annotations

import json
from pathlib import Path


def is_complete(marker: Path, settings: dict) -> bool:
    """True if ``marker`` records exactly ``settings`` (a finished generation); a stale or broken marker is removed."""
    if not marker.is_file():
        return False
    try:
        if json.loads(marker.read_text()) == settings:
            return True
    except json.JSONDecodeError:
        pass
    marker.unlink()
    return False


def mark_complete(marker: Path, settings: dict) -> None:
    """Record a finished generation (call after every file is written)."""
    marker.write_text(json.dumps(settings))
