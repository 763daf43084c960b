"""A long run keeps no finished result alive: the runner's writer releases each once written,
``milr.optimize_stream`` once handed over. 300 prompts, live ``MILRResult`` objects counted."""

from __future__ import annotations

import gc
import weakref

import pytest
from lightning import Callback

import milr
from callbacks.writer import OutputWriter
from data.prompt import Prompt
from data.stream import PromptStream, feed_loader
from milr.api import make_trainer
from milr.module import MILRModule
from milr.state import MILRResult, StopReason
from tests.helpers import mean_brightness

PROMPTS = [Prompt(f"prompt number {i}", i) for i in range(300)]
BATCH = 4
OPTIONS = {"mode": "image", "image_ratio": 0.25, "max_steps": 1, "batch_size": BATCH}


_made: list[weakref.ref[MILRResult]] = []


def live_results() -> int:
    """Results made by ``stop_prompt`` still referenced from anywhere."""
    return sum(ref() is not None for ref in _made)


@pytest.fixture(autouse=True)
def _track(monkeypatch) -> None:
    stop = MILRModule.stop_prompt

    def tracked(self, state, reason=StopReason.CALLBACK):
        result = stop(self, state, reason)
        _made.append(weakref.ref(result))
        return result

    monkeypatch.setattr(MILRModule, "stop_prompt", tracked)
    _made.clear()


class CountLive(Callback):
    def __init__(self) -> None:
        self.most = 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.most = max(self.most, live_results())


def test_the_runner_releases_each_result_once_written(tiny, tmp_path):
    count = CountLive()  # after the writer: what a step leaves alive
    module = MILRModule(tiny, mean_brightness, **OPTIONS)
    make_trainer(tiny, [OutputWriter(tmp_path), count]).fit(module, train_dataloaders=feed_loader(PromptStream(PROMPTS)))
    assert len(list(tmp_path.glob("*/result.json"))) == 300
    assert module.finished_count == 300
    assert count.most <= 2 * BATCH, count.most


def test_optimize_stream_hands_over_every_result_and_keeps_none(tiny):
    seen, most = [], 0
    for result in milr.optimize_stream(PROMPTS, tiny, mean_brightness, **OPTIONS):
        seen.append(result.prompt.uid)
        del result
        most = max(most, live_results())
    assert sorted(seen) == sorted(p.uid for p in PROMPTS)
    assert most <= 3 * BATCH, most  # the queue (2 batches) and the step in flight
    gc.collect()
    assert live_results() == 0


def test_leaving_a_stream_early_ends_the_fit(tiny):
    stream = milr.optimize_stream(PROMPTS, tiny, mean_brightness, **OPTIONS)
    first = next(stream)
    stream.close()  # joins the fit's thread
    assert first.prompt.index < BATCH
    gc.collect()
    assert live_results() == 1
