"""Prompt sets: the ``Prompt`` record, benchmark loaders and the prompt DataModule."""

from data.prompt import Prompt

__all__ = ["Prompt"]
