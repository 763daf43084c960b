"""Per-prompt stopping callbacks: built-in rules, a custom subclass, and their state."""

from __future__ import annotations

import pytest

import milr
from callbacks.prompt_stopping import PromptStopping
from milr.state import StopReason
from tests.helpers import ScriptedReward

PROMPTS = ["a red apple", "a blue cup", "a green bird"]


def test_threshold_callback_stops_each_prompt_on_its_own(tiny):
    stop = PromptStopping(threshold=0.5)
    reward = ScriptedReward({0: [0.1, 0.6], 1: [0.1, 0.2, 0.3, 0.9], 2: [0.7]})
    results = milr.optimize(PROMPTS, tiny, reward, image_ratio=0.25, max_steps=5, batch_size=2, callbacks=[stop])
    assert [r.steps for r in results] == [1, 3, 0]
    assert all(r.stop_reason is StopReason.CALLBACK for r in results)
    assert set(stop.stopped) == {0, 1, 2} and "> 0.5" in stop.stopped[0]


def test_patience_stops_when_the_best_reward_stalls(tiny):
    stop = PromptStopping(patience=2)
    reward = ScriptedReward({0: [0.5, 0.4, 0.3, 0.9]})
    [result] = milr.optimize(PROMPTS[:1], tiny, reward, image_ratio=0.25, max_steps=5, callbacks=[stop])
    assert result.steps == 2 and result.rewards == pytest.approx([0.5, 0.4, 0.3])


def test_a_custom_rule_is_a_few_lines(tiny):
    class StopOnSecondDrop(PromptStopping):
        def should_stop(self, state):
            drops = sum(b < a for a, b in zip(state.rewards, state.rewards[1:]))
            return "reward dropped twice" if drops >= 2 else None

    reward = ScriptedReward({0: [0.5, 0.4, 0.6, 0.3, 0.9]})
    cb = StopOnSecondDrop()
    [result] = milr.optimize(PROMPTS[:1], tiny, reward, image_ratio=0.25, max_steps=9, callbacks=[cb])
    assert result.steps == 3 and cb.stopped == {0: "reward dropped twice"}
    assert result.best_reward == pytest.approx(0.6)


def test_state_dict_round_trip():
    cb = PromptStopping(threshold=0.9)
    cb.stopped = {3: "reward 0.95 > 0.9"}
    other = PromptStopping(threshold=0.9)
    other.load_state_dict(cb.state_dict())
    assert other.stopped == cb.stopped and other.state_key == cb.state_key
    assert PromptStopping(threshold=0.5).state_key != cb.state_key
