"""Where user state lives: `$FOUNDRY_MAGICS_HOME`, default `~/.config/foundry-magics/`."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["home", "ENV_HOME"]

ENV_HOME = "FOUNDRY_MAGICS_HOME"


def home(create: bool = False) -> Path:
    value = os.environ.get(ENV_HOME)
    path = Path(value).expanduser() if value else Path.home() / ".config" / "foundry-magics"
    if create:
        path.mkdir(parents=True, exist_ok=True)
    return path
