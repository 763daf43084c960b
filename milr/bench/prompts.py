"""The benchmark's prompts: built in, or from a prompt file whose metadata a real reward needs."""

from __future__ import annotations

from data.formats import load_prompts
from data.prompt import Prompt

PROMPTS = [
    "a photo of a red apple and a blue cup",
    "two black dogs playing with an orange ball",
    "a green bird sitting left of a yellow banana",
    "a purple flower in a pink vase next to a gray stone",
    "a white cat on a brown wooden table",
    "three blue cups on a table",
    "a yellow taxi under the white sky",
    "an orange ball right of a black dog",
]


def bench_prompts(path: str | None, count: int) -> list[Prompt]:
    """``count`` prompts with indices 0..count-1: from a prompt file (any ``data`` format, e.g.
    GenEval's, whose metadata its reward needs), else from ``PROMPTS``, cycling when short."""
    source = load_prompts(path) if path else [Prompt(text, i, {"prompt": text}) for i, text in enumerate(PROMPTS)]
    return [Prompt(source[i % len(source)].text, i, source[i % len(source)].metadata) for i in range(count)]
