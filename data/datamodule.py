"""The prompt DataModule: load a prompt set, keep an index range, shard it by rank, skip finished ones."""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Iterable, Literal

import torch.distributed as dist
from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader

from data.formats import MAX_CHARS, load_prompt_list, load_prompts
from data.prompt import Prompt
from data.stream import PromptStream, feed_loader


def _gather_indices(indices: list[str]) -> list[str]:
    """The union of every rank's ``indices``.

    Lightning calls ``state_dict`` on every rank but writes only rank 0's copy of the
    checkpoint, so the saved state must already hold what all ranks have taken.
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return sorted(indices)
    parts: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(parts, indices)
    return sorted(i for part in parts for i in part)


def load_range(
    path: str | None, prompts: list[str] | None, format: str, start: int, end: int | None, max_chars: int
) -> list[Prompt]:
    """The prompts of the source (a file or a list) with ``start <= index < end``; a file that
    cannot be read, or a range with no prompt in it, is a ``ValueError`` naming the file (and line)."""
    if prompts is not None:
        source, loaded = "prompt list", load_prompt_list(prompts, max_chars=max_chars)
    else:
        source, loaded = path, load_prompts(path, format, max_chars=max_chars)
    in_range = [p for p in loaded if start <= p.index < (float("inf") if end is None else end)]
    if not in_range:
        raise ValueError(
            f"data.start={start}" + ("" if end is None else f" / data.end={end}") + f" selects no prompt of {source}: "
            f"its indices run from {loaded[0].index} to {loaded[-1].index}"
        )
    return in_range


def shard(prompts: list[Prompt], rank: int, world_size: int) -> list[Prompt]:
    """This rank's prompts: round robin over prompts (not units), so every repeat of a prompt is on
    one rank and only that rank ever completes its folder."""
    return prompts[rank::world_size]


class MILRDataModule(LightningDataModule):
    """Prompts for MILR: each rank optimises its own shard, ``batch_size`` prompts at a time.

    Args:
        path: prompt file (text, GenEval .jsonl, T2I-CompBench ``*_val.txt``, WISE .json).
        prompts: prompts given directly instead of ``path``.
        format: file format; ``"auto"`` infers it from the file name.
        start: keep prompts with ``start <= index`` (indices of the source file, 0-based).
        end: keep prompts with ``index < end`` (None: to the end of the file).
        batch_size: number of prompts optimised at once (the CLI links it to the model).
        max_chars: longer prompts are rejected at load time.
        repeats: independent runs per prompt (own seeds; ``samples/0000.png`` ... ``<repeats-1>``): GenEval's
            protocol scores 4 images per prompt, T2I-CompBench's 10.

    The train dataloader yields the rank's ``PromptStream`` rather than batches of prompts;
    the model takes new prompts from it as its slots free up (see ``PromptFeed``).
    """

    def __init__(
        self,
        path: str | None = None,
        prompts: list[str] | None = None,
        format: Literal["auto", "text", "geneval", "t2i_compbench", "wise"] = "auto",
        start: int = 0,
        end: int | None = None,
        batch_size: int = 1,
        max_chars: int = MAX_CHARS,
        repeats: int = 1,
    ) -> None:
        super().__init__()
        if (path is None) == (prompts is None):
            raise ValueError(
                "MILRDataModule: pass exactly one of path= (a prompt file) or prompts= (a list of prompts); "
                "to read a file with a config that lists prompts (e.g. the demo), add --data.prompts null"
            )
        if start < 0:
            raise ValueError(f"MILRDataModule: start must be >= 0, got {start}")
        if end is not None and end <= start:
            raise ValueError(f"MILRDataModule: empty prompt range start={start}, end={end}")
        if batch_size < 1:
            raise ValueError(f"MILRDataModule: batch_size must be >= 1, got {batch_size}")
        if max_chars < 1:
            raise ValueError(f"MILRDataModule: max_chars must be >= 1, got {max_chars}")
        if repeats < 1:
            raise ValueError(f"MILRDataModule: repeats must be >= 1, got {repeats}")
        self.save_hyperparameters()
        self.path = path
        self.prompt_texts = prompts
        self.format = format
        self.start = start
        self.end = end
        self.batch_size = batch_size
        self.max_chars = max_chars
        self.repeats = repeats
        self.stream: PromptStream | None = None
        self._all_prompts: list[Prompt] | None = None
        self._skipped: set[str] = set()
        self._first: list[str] = []
        self._restored_taken: list[str] = []
        self._shard: tuple[int, int] | None = None  # (rank, world size) the stream was built for

    def skip(self, uids: Iterable[str]) -> None:
        """Exclude units (``Prompt.uid``) that are already finished (resume from existing outputs)."""
        if self.stream is not None:
            raise RuntimeError("MILRDataModule.skip() must be called before setup()")
        self._skipped.update(str(u) for u in uids)

    def first(self, uids: Iterable[str]) -> None:
        """Hand these units out before the others (prompts an interrupted run left half-optimised)."""
        if self.stream is not None:
            raise RuntimeError("MILRDataModule.first() must be called before setup()")
        self._first = [str(u) for u in uids]

    def setup(self, stage: str | None = None) -> None:
        rank, world_size = (0, 1) if self.trainer is None else (self.trainer.global_rank, self.trainer.world_size)
        # Lightning calls setup once per fit/validate/...: keep progress, unless this is another
        # rank than the stream was built for (a process launched after a set-up in the parent)
        if self.stream is not None and self._shard == (rank, world_size):
            return
        self._shard = (rank, world_size)
        in_range = load_range(self.path, self.prompt_texts, self.format, self.start, self.end, self.max_chars)
        self._all_prompts = [replace(p, repeat=r) for p in shard(in_range, rank, world_size) for r in range(self.repeats)]
        pending = [p for p in self._all_prompts if p.uid not in self._skipped]
        first = set(self._first)
        self.stream = PromptStream([p for p in pending if p.uid in first] + [p for p in pending if p.uid not in first])
        self._restore_stream()

    @property
    def all_prompts(self) -> list[Prompt]:
        """This rank's prompts after range selection and sharding, before ``skip``."""
        if self._all_prompts is None:
            raise RuntimeError("MILRDataModule: call setup() first")
        return list(self._all_prompts)

    @property
    def pending_prompts(self) -> list[Prompt]:
        """This rank's prompts not handed out yet."""
        if self.stream is None:
            raise RuntimeError("MILRDataModule: call setup() first")
        return self.stream.pending_prompts

    def train_dataloader(self) -> DataLoader:
        if self.stream is None:
            raise RuntimeError("MILRDataModule: call setup() first")
        return feed_loader(self.stream)

    def state_dict(self) -> dict[str, Any]:
        """Units handed out so far on all ranks (collective: call it on every rank)."""
        if self.stream is None:
            return {}
        return {"taken": _gather_indices(self.stream.taken)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Drop the prompts in ``state_dict`` from this rank's queue (before or after setup)."""
        self._restored_taken = [str(i) for i in state_dict.get("taken", [])]
        if self.stream is not None:
            self._restore_stream()

    def _restore_stream(self) -> None:
        # the saved state covers all ranks (and maybe a different sharding): keep this rank's part
        mine = {p.uid for p in self.stream.pending_prompts} | set(self.stream.taken)
        self.stream.load_state_dict({"taken": [i for i in self._restored_taken if i in mine]})
