"""Atomic writes and completion markers of the output writer."""

from __future__ import annotations

import json
import os

import pytest

from milr.results.summary import summarize
from milr.results.write import completed
from milr.files import atomic_write


def test_atomic_write_replaces_whole_files_and_leaves_no_temp(tmp_path):
    target = tmp_path / "a" / "b.txt"
    atomic_write(target, "one")
    atomic_write(target, b"two")
    assert target.read_text() == "two" and os.listdir(target.parent) == ["b.txt"]


def test_atomic_write_failure_keeps_the_old_file(tmp_path, monkeypatch):
    target = tmp_path / "keep.txt"
    atomic_write(target, "old")

    def boom(*args):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        atomic_write(target, "new")
    assert target.read_text() == "old" and os.listdir(tmp_path) == ["keep.txt"]


def test_only_prompts_with_a_result_file_count_as_complete(tmp_path):
    (tmp_path / "00000").mkdir()
    repeat = {"repeat": 0, "initial_reward": 0.1, "final_reward": 0.4, "selected_reward": 0.5, "best_reward": 0.5, "steps": 2}
    (tmp_path / "00000" / "result.json").write_text(json.dumps({"key": "00000", "repeats": [repeat]}))
    (tmp_path / "00001" / "samples").mkdir(parents=True)  # interrupted before result.json
    (tmp_path / "tensorboard").mkdir()
    assert completed(tmp_path) == {"00000#0"}
    summary = summarize(tmp_path, seconds=1.0)
    assert summary["prompts"] == 1 and summary["best_reward_mean"] == 0.5 and summary["mean_steps"] == 2


def test_written_files_honour_the_umask_not_mkstemps_0600(tmp_path):
    """Results folders are shared: under umask 022 a file is 0644 like any ``open()``-made file."""
    import os

    from milr import files

    old = os.umask(0o022)
    try:
        mode = files._file_mode()
    finally:
        os.umask(old)
    assert mode == 0o644
    files.atomic_write(tmp_path / "a.json", "{}")
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == files.FILE_MODE == 0o666 & ~old
