"""The options are defined once (``milr.options.MILROptions``): the module's flat signature, which
LightningCLI reads, and ``milr.optimize`` must agree with it on every option and default."""

from __future__ import annotations

import inspect
from dataclasses import fields

import pytest

import milr
from milr.module import MILRModule
from milr.options import MILROptions, RewardCallOptions, check_options

NOT_OPTIONS = {"self", "backbone", "reward", "monitors"}  # objects, not option values


def defaults(function) -> dict:
    return {n: p.default for n, p in inspect.signature(function).parameters.items() if n not in NOT_OPTIONS and p.kind is not p.VAR_KEYWORD}


def test_the_module_and_the_options_agree_on_every_option_and_default():
    assert defaults(MILRModule.__init__) == {f.name: f.default for f in fields(MILROptions)}


def test_the_api_and_the_module_agree_on_every_option_and_default():
    api = {n: d for n, d in defaults(milr.optimize).items() if n not in ("prompts", "callbacks")}
    assert api == defaults(MILRModule.__init__)
    assert inspect.signature(milr.optimize).parameters["monitors"].default == ()


def test_the_reward_call_options_are_one_group():
    assert {f.name for f in fields(RewardCallOptions)} == {"reward_timeout", "reward_retries", "reward_backoff", "on_reward_failure"}
    policy = MILROptions(reward_timeout=5.0, reward_retries=1, reward_backoff=0.5).call_policy
    assert (policy.timeout, policy.retries, policy.backoff) == (5.0, 1, 0.5)
    with pytest.raises(ValueError, match="^reward_retries must be >= 0"):
        RewardCallOptions(reward_retries=-1)


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("mode", "video", "model.mode must be 'text', 'image' or 'both'"),
        ("text_ratio", 1.5, "model.text_ratio must be in [0, 1]"),
        ("reward_timeout", 0, "model.reward_timeout must be > 0 seconds"),
        ("on_reward_failure", "retry", "model.on_reward_failure must be 'stop' (end the run) or 'skip'"),
        ("prompt_format", "chatml", "model.prompt_format must be one of"),
        ("step_order", "text_image", "model.step_order='text_image' alternates text and image latents"),
    ],
)
def test_a_bad_value_is_refused_naming_its_flag(option, value, message):
    kwargs = {option: value, **({"mode": "text"} if option == "step_order" else {})}
    with pytest.raises(ValueError) as err:
        check_options(prefix="model.", **kwargs)
    assert str(err.value).startswith(message)
