"""Files the import writes about users: readable by their owner alone."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TextIO


def open_private(path: Path) -> TextIO:
    """``path`` opened for writing text, readable by its owner alone (0600): the report and the
    checkpoint hold users' names and emails. An existing file is narrowed to 0600 too."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(descriptor, 0o600)
    return open(descriptor, "w", encoding="utf-8", newline="")
