"""The queue of prompts a rank still has to optimise, and the dataset that hands it to Lightning."""

from __future__ import annotations

import itertools
from collections import Counter, deque
from typing import Any, Iterator, Sequence

from torch.utils.data import DataLoader, IterableDataset

from data.prompt import Prompt


class PromptStream:
    """Pending prompts of this rank, handed out in order as optimisation slots free up.

    Prompts converge after different numbers of steps, so the model does not consume fixed
    batches: each step it calls ``take(free_slots)``. The state is the list of indices handed
    out (``Prompt.uid``); restoring it removes exactly those prompts from the queue, wherever they are in it.
    """

    def __init__(self, prompts: Sequence[Prompt]) -> None:
        duplicates = sorted(i for i, n in Counter(prompt.uid for prompt in prompts).items() if n > 1)
        if duplicates:
            raise ValueError(f"prompt keys must be unique (one unit per key and repeat), repeated: {duplicates[:10]}")
        self._prompts = list(prompts)
        self._queue: deque[Prompt] = deque(self._prompts)
        self._taken: list[str] = []

    def take(self, n: int) -> list[Prompt]:
        """Pop up to ``n`` prompts in order (fewer, or none, near the end)."""
        if n < 0:
            raise ValueError(f"take(n) needs n >= 0, got {n}")
        batch = [self._queue.popleft() for _ in range(min(n, len(self._queue)))]
        self._taken.extend(prompt.uid for prompt in batch)
        return batch

    @property
    def pending(self) -> int:
        return len(self._queue)

    @property
    def pending_prompts(self) -> list[Prompt]:
        return list(self._queue)

    @property
    def exhausted(self) -> bool:
        return not self._queue

    @property
    def taken(self) -> list[str]:
        """Units (``Prompt.uid``) handed out so far, in order."""
        return list(self._taken)

    def state_dict(self) -> dict[str, Any]:
        return {"taken": list(self._taken)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Mark ``state["taken"]`` as handed out; they must all be prompts of this stream."""
        taken = [str(i) for i in state["taken"]]
        known = {prompt.uid for prompt in self._prompts}
        unknown = sorted(set(taken) - known)
        if unknown:
            raise ValueError(f"stream state names prompts this stream does not hold: {unknown[:10]}")
        done = set(taken)
        self._taken = taken
        self._queue = deque(prompt for prompt in self._prompts if prompt.uid not in done)


class PromptFeed(IterableDataset):
    """Yields the ``PromptStream`` itself, forever; the model pulls ``batch.take(free_slots)``.

    Yielding the queue rather than prompts is deliberate: Lightning prefetches one batch ahead
    of ``training_step``, which would otherwise admit prompts before any slot is free (and lose
    them from the checkpointed state). Fetching the queue consumes nothing. The feed never
    ends; the model stops training once the stream is exhausted and its slots are empty.
    Use it with ``num_workers=0``: a worker process would hold a copy of the queue.
    """

    def __init__(self, stream: PromptStream) -> None:
        self.stream = stream

    def __iter__(self) -> Iterator[PromptStream]:
        return itertools.repeat(self.stream)


def _identity(batch: Any) -> Any:
    return batch


def feed_loader(stream: PromptStream) -> DataLoader:
    """The train dataloader over ``stream``: each batch is the stream itself.

    ``num_workers=0``: the stream must live in this process, where the model takes from it.
    """
    return DataLoader(PromptFeed(stream), batch_size=None, collate_fn=_identity, num_workers=0)
