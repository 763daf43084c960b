"""MILR: test-time latent reasoning for text-to-image generation with Janus-Pro, on Lightning.

The public names load lazily, so importing a light submodule (``milr.prompts``,
``milr.shapes.world``) does not import Lightning or the LightningModule.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "optimize": "milr.api",
    "optimize_stream": "milr.api",
    "JanusBackbone": "milr.backbone",
    "MILRModule": "milr.module",
    "MILRResult": "milr.state",
    "PromptState": "milr.state",
    "StopReason": "milr.state",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'milr' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
