"""Prefilled prompt KV caches kept per row across MILR steps.

A MILR step decodes the same prompts again and again: the think prompt of every running prompt
never changes, and an image prompt changes only when its think text does. Prefilling them anew
for every decode costs a forward pass over every prompt token. ``PromptKV`` is one prompt's
prefilled KV without padding; ``PromptCache`` keeps them per (owner, text), prefills in one
batch only the rows it does not hold, and drops an owner's rows when they are replaced or the
owner leaves. A decode assembles its working cache from the rows (``assemble``): that copy is the
one the decode extends, so an unchanged row is held once, as before.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Hashable, Literal, Sequence

import torch
from transformers import Cache

#: ``rows``: a row is prefilled once and kept until replaced or released. ``batch``: rows are
#: reused only when a call asks for exactly the previous call's rows, and ``never``: every call
#: prefills every row. ``batch`` and ``never`` are how milr reused the image and the think prompt
#: before per-row caches; the bench runs them side by side with ``rows``.
Reuse = Literal["rows", "batch", "never"]


@dataclass
class PromptKV:
    """One prompt's prefilled KV cache, unpadded: ``keys[l]`` / ``values[l]`` are
    ``[S, heads, T, head_dim]`` for its ``S`` sequences (1 for a think prompt; cond and uncond for
    an image prompt) and ``last_hidden [S, d]`` is the hidden state of their last position."""

    keys: list[torch.Tensor]
    values: list[torch.Tensor]
    last_hidden: torch.Tensor

    @property
    def length(self) -> int:
        return int(self.keys[0].shape[2])


def split_rows(cache: Cache, mask: torch.Tensor, hidden: torch.Tensor, rows: int) -> list[PromptKV]:
    """Cut a batched, left-padded prefill of ``S · rows`` sequences (sequence ``s`` of row ``i`` at
    ``s · rows + i``; ``mask [S·rows, T]``, ``hidden [S·rows, T, d]``) into one ``PromptKV`` per
    row; the copies own their memory, so the padded batch can be freed."""
    width = mask.shape[1]
    out = []
    for i in range(rows):
        start = width - int(mask[i].sum())
        out.append(
            PromptKV(
                [layer.keys[i::rows, :, start:].clone() for layer in cache.layers],
                [layer.values[i::rows, :, start:].clone() for layer in cache.layers],
                hidden[i::rows, -1].clone(),
            )
        )
    return out


def left_padded_mask(rows: Sequence[PromptKV], device: torch.device) -> torch.Tensor:
    """The attention mask of ``rows`` assembled left-padded, ordered like ``split_rows``' input."""
    width = max(r.length for r in rows)
    sequences = rows[0].keys[0].shape[0]
    lengths = torch.tensor([r.length for r in rows] * sequences, device=device)
    return (torch.arange(width, device=device) >= width - lengths[:, None]).long()


def last_hidden(rows: Sequence[PromptKV]) -> torch.Tensor:
    """The rows' last hidden states ``[S · rows, d]``, ordered like ``left_padded_mask``."""
    return torch.stack([r.last_hidden for r in rows], 1).flatten(0, 1)


def assemble(rows: Sequence[PromptKV], cache: Cache) -> Cache:
    """Write ``rows`` left-padded into the empty (or ``reset``) ``cache``, one layer at a time so
    only one layer's padded copy exists at once; pad positions hold zeros (they are masked)."""
    n, width = len(rows), max(r.length for r in rows)
    for layer in range(len(rows[0].keys)):
        padded = []
        for part in (rows[0].keys[layer], rows[0].values[layer]):
            sequences, heads, _, dim = part.shape
            padded.append(part.new_zeros(sequences * n, heads, width, dim))
        for i, row in enumerate(rows):
            padded[0][i::n, :, width - row.length :] = row.keys[layer]
            padded[1][i::n, :, width - row.length :] = row.values[layer]
        cache.update(padded[0], padded[1], layer)
    return cache


class PromptCache:
    """Prefilled rows per (owner, text), e.g. (prompt index, image prompt).

    ``rows(owners, texts)`` returns one ``PromptKV`` per entry, prefilling the missing ones with
    one ``prefill(texts)`` call; an owner's rows for other texts are dropped first (its think
    text changed, so its old image prompt is dead), and ``release(owner)`` drops the rest.
    """

    def __init__(self, prefill: Callable[[list[str]], list[PromptKV]], reuse: Reuse = "rows") -> None:
        if reuse not in ("rows", "batch", "never"):
            raise ValueError(f"reuse must be 'rows', 'batch' or 'never', got {reuse!r}")
        self.prefill = prefill
        self.reuse = reuse
        self._rows: dict[tuple[Hashable, str], PromptKV] = {}
        self._last: list[tuple[Hashable, str]] = []

    def __len__(self) -> int:
        return len(self._rows)

    def rows(self, owners: Sequence[Hashable], texts: Sequence[str]) -> list[PromptKV]:
        keys = list(zip(owners, texts))
        if self.reuse == "never" or (self.reuse == "batch" and keys != self._last):
            self._rows.clear()
        self._last = keys
        wanted, callers = set(keys), set(owners)
        for key in [k for k in self._rows if k[0] in callers and k not in wanted]:
            del self._rows[key]  # before prefilling: a replaced row is never held twice
        missing = list(dict.fromkeys(k for k in keys if k not in self._rows))
        if missing:
            self._rows.update(zip(missing, self.prefill([text for _, text in missing])))
        return [self._rows[k] for k in keys]

    def release(self, owner: Hashable) -> None:
        for key in [k for k in self._rows if k[0] == owner]:
            del self._rows[key]
