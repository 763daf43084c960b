"""Per-row prompt caches: which rows are prefilled, kept and dropped, and that a batch assembled
from rows prefilled apart holds exactly what one batched prefill holds."""

from __future__ import annotations

import pytest
import torch
from transformers import DynamicCache

from milr.prompt_cache import PromptCache, PromptKV, assemble, left_padded_mask
from milr.prompts import image_prompt


class CountingPrefill:
    """A fake prefill: one 1-layer row per text (its length = the text's), and every call recorded."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def __call__(self, texts: list[str]) -> list[PromptKV]:
        self.calls.append(list(texts))
        return [PromptKV([torch.ones(1, 1, len(t), 2)], [torch.ones(1, 1, len(t), 2)], torch.zeros(1, 2)) for t in texts]


def test_rows_are_prefilled_once_in_one_call_and_reused_until_replaced_or_released():
    prefill = CountingPrefill()
    cache = PromptCache(prefill)
    first = cache.rows([0, 1, 1], ["a", "bb", "bb"])
    assert prefill.calls == [["a", "bb"]] and first[1] is first[2]  # a repeated row is prefilled once
    again = cache.rows([1, 0], ["bb", "a"])
    assert prefill.calls == [["a", "bb"]] and again == [first[1], first[0]]
    cache.rows([0], ["ccc"])  # owner 0's text changed: only its new row is prefilled, its old one dropped
    assert prefill.calls[-1] == ["ccc"] and len(cache) == 2
    cache.release(1)
    assert len(cache) == 1
    cache.rows([1], ["bb"])
    assert prefill.calls[-1] == ["bb"]


def test_the_earlier_rules_reuse_only_an_identical_batch_or_nothing():
    prefill = CountingPrefill()
    batch = PromptCache(prefill, reuse="batch")
    batch.rows([0, 1], ["a", "b"])
    batch.rows([0, 1], ["a", "b"])
    batch.rows([0], ["a"])
    assert prefill.calls == [["a", "b"], ["a"]]
    never = PromptCache(prefill, reuse="never")
    never.rows([0], ["a"])
    never.rows([0], ["a"])
    assert prefill.calls[2:] == [["a"], ["a"]]
    with pytest.raises(ValueError, match="reuse"):
        PromptCache(prefill, reuse="sometimes")


def test_rows_prefilled_apart_assemble_into_the_batched_prefill(tiny):
    prompts = [image_prompt("a cat", None), image_prompt("two dogs and a ball on the grass", None), image_prompt("a red cup", None)]
    together = tiny.image_rows(prompts)
    apart = [tiny.image_rows([p])[0] for p in prompts]
    batched = assemble(together, DynamicCache())
    mask = left_padded_mask(apart, tiny.device)
    assert mask.shape == (6, max(r.length for r in apart)) and torch.equal(mask[:3], mask[3:])
    assembled = assemble(apart, DynamicCache())
    for a, b in zip(assembled.layers, batched.layers):
        torch.testing.assert_close(a.keys, b.keys, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(a.values, b.values, rtol=1e-5, atol=1e-6)
        assert (a.keys.transpose(1, 2)[mask == 0] == 0).all()  # pads hold zeros (masked anyway)
