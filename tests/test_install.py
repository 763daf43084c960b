"""What a fresh install must give: every module imports with the declared dependencies, every
shipped config builds, and a demo run triggers no deprecation warning through our calls."""

from __future__ import annotations

import importlib
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import rewards
import train_free_runner
from data.datamodule import load_range

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("milr", "rewards", "data", "callbacks")
MAIN_CONFIGS = sorted(p for p in (ROOT / "configs").rglob("*.yaml") if p.parent.name not in ("rewards", "presets", "compare"))  # fragments


def all_modules() -> list[str]:
    names = []
    for package in PACKAGES:
        path = [str(ROOT / package)]
        found = pkgutil.walk_packages(path, prefix=f"{package}.")  # subpackages too (milr.results, milr.bench)
        names += [package] + [m.name for m in found if not m.name.rsplit(".", 1)[1].startswith("_")]
    return sorted(names)


@pytest.mark.parametrize("module", all_modules())
def test_every_module_imports(module):
    importlib.import_module(module)


@pytest.mark.parametrize("config", MAIN_CONFIGS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_main_config_builds_its_reward_and_prompts_and_passes_the_option_checks(config):
    """Everything of a main config but the backbone's weights (which cannot be downloaded here)."""
    reward = rewards.base.from_config(config)
    assert isinstance(reward, rewards.Reward)
    parser_args = ["--config", str(config), "--print_config"]
    with pytest.raises(SystemExit) as exit_:  # parses and type-checks every option, builds nothing
        train_free_runner.main(parser_args)
    assert exit_.value.code in (0, None)
    import yaml

    data = yaml.safe_load(config.read_text())["data"]
    if data.get("path"):
        prompts = load_range(data["path"], None, data.get("format", "auto"), data.get("start", 0), data.get("end"), 2000)
        assert prompts


def test_the_demo_triggers_no_future_or_deprecation_warning(tmp_path):
    """Run as a user would, with every FutureWarning / DeprecationWarning an error and nothing
    hidden but the third-party-internal ones ``milr.api.ignore_known_warnings`` names."""
    proc = subprocess.run(
        [sys.executable, "-W", "error::FutureWarning", "-W", "error::DeprecationWarning", "train_free_runner.py",
         "--verbose", "--output_dir", str(tmp_path), "--model.max_steps", "2"],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "summary.json").is_file()
    assert "Warning" not in proc.stderr


def test_a_normal_run_prints_no_lightning_info_lines_or_warnings(tmp_path):
    proc = subprocess.run(
        [sys.executable, "train_free_runner.py", "--output_dir", str(tmp_path), "--model.max_steps", "1"],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    printed = proc.stdout + proc.stderr
    for noise in ("GPU available", "TPU available", "limit_train_batches", "Seed set", "Warning", "/?"):
        assert noise not in printed
    assert "MILR summary" in proc.stdout and "7/7" in proc.stdout
