"""Prompt sets: the ``Prompt`` record, benchmark loaders and the prompt DataModule."""

from data.formats import (
    LOADERS,
    T2I_COMPBENCH_CATEGORIES,
    infer_format,
    load_geneval,
    load_prompt_list,
    load_prompts,
    load_t2i_compbench,
    load_text,
    load_wise,
    t2i_compbench_category,
)
from data.prompt import Prompt
from data.stream import PromptFeed, PromptStream, feed_loader

__all__ = [
    "LOADERS",
    "MILRDataModule",
    "Prompt",
    "PromptFeed",
    "PromptStream",
    "T2I_COMPBENCH_CATEGORIES",
    "feed_loader",
    "infer_format",
    "load_geneval",
    "load_prompt_list",
    "load_prompts",
    "load_t2i_compbench",
    "load_text",
    "load_wise",
    "t2i_compbench_category",
]


def __getattr__(name: str):
    # imported on first use: ``import data.prompt`` (every reward does) should not pay for Lightning
    if name == "MILRDataModule":
        from data.datamodule import MILRDataModule

        return MILRDataModule
    raise AttributeError(f"module 'data' has no attribute {name!r}")
