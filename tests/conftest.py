"""Shared fixtures: everything offline, on the tiny random Janus."""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

import pytest  # noqa: E402

from milr.backbone import JanusBackbone  # noqa: E402


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture(autouse=True)
def _tiny_default(monkeypatch: pytest.MonkeyPatch) -> None:
    """In-process runner calls without ``--config`` use the tiny random model (configs/tiny.yaml),
    which takes seconds; the real demo (the Shapes model) is run as a user runs it by
    tests/test_install.py and CI."""
    import train_free_runner

    monkeypatch.setattr(train_free_runner, "DEMO_CONFIG", train_free_runner.DEMO_CONFIG.with_name("tiny.yaml"))


@pytest.fixture(scope="session")
def tiny() -> JanusBackbone:
    """Tiny random Janus: 4×4 image tokens (16 px images), think text capped at 12 tokens."""
    return JanusBackbone.tiny(seed=0, grid=4, max_think_tokens=12)


@pytest.fixture(scope="session")
def tiny8() -> JanusBackbone:
    """The demo's tiny model: 8×8 image tokens."""
    return JanusBackbone.tiny(seed=0, grid=8, max_think_tokens=12)
