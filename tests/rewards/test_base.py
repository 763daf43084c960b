"""``rewards.base.from_config``: a reward built from a YAML the way the runner builds it."""

from __future__ import annotations

from pathlib import Path

import pytest

from rewards.base import from_config
from rewards.pixel import ColorReward

CONFIGS = sorted((Path(__file__).resolve().parents[2] / "configs" / "rewards").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_every_shipped_reward_config_builds_its_reward_without_loading_weights(path):
    reward = from_config(path)
    assert type(reward).__module__ == "rewards." + path.read_text().split("class_path: rewards.")[1].split(".")[0]


def test_a_top_level_class_path_with_init_args_builds_that_reward(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("class_path: rewards.pixel.ColorReward\ninit_args:\n  default_colour: blue\n  calibrate: false\n")
    reward = from_config(path)
    assert isinstance(reward, ColorReward) and (reward.default_colour, reward.calibrate) == ("blue", False)


def test_a_yaml_without_a_reward_is_an_error_naming_the_file(tmp_path):
    path = tmp_path / "trainer_only.yaml"
    path.write_text("model:\n  lr: 0.1\ntrainer:\n  devices: 1\n")
    with pytest.raises(ValueError, match="trainer_only.yaml: no reward"):
        from_config(path)


def test_an_unknown_init_arg_is_an_error_naming_it(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("model:\n  reward:\n    class_path: rewards.pixel.ColorReward\n    init_args:\n      colour_typo: 3\n")
    with pytest.raises(Exception, match="colour_typo"):
        from_config(path)
