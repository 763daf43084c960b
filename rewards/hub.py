"""Loading reward-model checkpoints with transformers, failing loudly when they are missing."""

from __future__ import annotations

import os
from typing import Any, Callable, TypeVar

import torch

T = TypeVar("T")


class MissingCheckpointError(RuntimeError):
    """A reward model's weights are not available; the message says which and how to get them."""


def load_pretrained(loader: Callable[..., T], name_or_path: str, *, what: str, **kwargs: Any) -> T:
    """``loader(name_or_path, **kwargs)`` (e.g. ``CLIPModel.from_pretrained``) with a clear error.

    A reward that cannot load its weights must never fall back to a made-up score, so every
    failure is re-raised naming the checkpoint, the option that points at a local copy, and
    the command that downloads it.
    """
    try:
        return loader(name_or_path, **kwargs)
    except (OSError, ValueError) as err:
        offline = os.environ.get("HF_HUB_OFFLINE") == "1"
        raise MissingCheckpointError(
            f"{what}: could not load checkpoint {name_or_path!r}"
            + (" (HF_HUB_OFFLINE=1: nothing is downloaded)" if offline else "")
            + f". Download it with `hf download {name_or_path}` on a machine with "
            "internet access (it lands in the Hugging Face cache), or pass a local directory "
            "holding config.json and the weights as this reward's checkpoint option. "
            f"Original error: {type(err).__name__}: {err}"
        ) from err


class LazyModel:
    """A model a reward needs: weights load on first use, once, on the device/dtype set by ``to``.

    Subclasses implement ``_load`` (set ``self.model`` and any processors, via ``load_pretrained``).
    """

    def __init__(self, checkpoint: str, batch_size: int) -> None:
        self.checkpoint = checkpoint
        self.batch_size = batch_size
        self.device = torch.device("cpu")
        self.dtype = torch.float32
        self.model: Any = None

    def to(self, device: torch.device, dtype: torch.dtype) -> None:
        self.device, self.dtype = device, dtype
        if self.model is not None:
            self.model.to(device=device, dtype=dtype)

    def load(self) -> None:
        if self.model is None:
            self._load()
            self.model.to(device=self.device, dtype=self.dtype).eval()

    def _load(self) -> None:
        raise NotImplementedError
