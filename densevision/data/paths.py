"""Where the real datasets for checks and benchmarks live (never inside the project).

``$DENSEVISION_DATA`` if set, else ``../shared/data`` next to the project root. Tests use
:func:`dataset_dir` and skip with :func:`missing_reason` when it returns None.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

ENV_VARIABLE = "DENSEVISION_DATA"
PROJECT_ROOT = Path(__file__).resolve().parents[2]


def shared_data_dir() -> Path:
    """The folder holding real datasets (it may not exist)."""
    configured = os.environ.get(ENV_VARIABLE)
    return Path(configured).expanduser() if configured else PROJECT_ROOT.parent / "shared" / "data"


def dataset_dir(name: str) -> Optional[Path]:
    """``shared_data_dir() / name`` if it is a folder, else None (e.g. ``dataset_dir("CamVid")``)."""
    path = shared_data_dir() / name
    return path if path.is_dir() else None


def missing_reason(name: str) -> str:
    """Why a real-data check is skipped, saying where the data was looked for."""
    return (f"real dataset {name!r} not found at {shared_data_dir() / name} "
            f"(set {ENV_VARIABLE} to the folder holding it)")
