"""``rewards.base``: a reward built from a YAML the way the runner builds it (``from_config``), and
the boundary every reward call passes (``score``): timeout, retries, answer checks."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
import torch
from PIL import Image

from data.prompt import Prompt
from rewards.base import CallPolicy, Reward, RewardOutput, RewardTimeout, TransientRewardError, from_config, score
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


# ---------------------------------------------------------------- the call policy and the answer checks of ``score``
class Answers(Reward):
    """Answers ``scores[n]`` on call ``n``; ``hold[n]`` seconds before answering, ``raise_[n]`` instead of answering."""

    name = "answers"

    def __init__(self, scores, hold=None, raise_=None):
        self.scores, self.hold, self.raise_ = scores, hold or {}, raise_ or {}
        self.calls, self.threads, self.returned = 0, [], []

    def evaluate(self, images, prompts):
        n, self.calls = self.calls, self.calls + 1
        self.threads.append(threading.current_thread())
        time.sleep(self.hold.get(n, 0.0))
        if n in self.raise_:
            raise self.raise_[n]
        self.returned.append(n)
        return RewardOutput(torch.full((len(images),), self.scores[n]), [{"call": n} for _ in images])


IMAGES = [Image.new("RGB", (4, 4))]
PROMPTS = [Prompt("a cat", 7)]


def test_without_a_timeout_the_reward_is_called_inline():
    reward = Answers([0.5])
    assert score(reward, IMAGES, PROMPTS).scores.tolist() == [0.5]
    assert reward.threads == [threading.current_thread()]


def test_a_hanging_call_times_out_is_retried_then_raises_within_the_bound():
    reward = Answers([0.9, 0.9], hold={0: 3.0, 1: 3.0})
    retried = []
    start = time.perf_counter()
    with pytest.raises(RewardTimeout, match=r"no answer within 0.2 s"):
        score(reward, IMAGES, PROMPTS, CallPolicy(timeout=0.2, retries=1, backoff=0.0), on_retry=lambda *a: retried.append(a))
    assert time.perf_counter() - start < 2.0  # two 0.2 s attempts, not the 3 s hang
    assert reward.calls == 2 and len(retried) == 1 and isinstance(retried[0][1], RewardTimeout)


def test_a_late_answer_of_an_abandoned_call_is_never_the_score():
    reward = Answers([0.9, 0.1, 0.3], hold={0: 0.5})
    out = score(reward, IMAGES, PROMPTS, CallPolicy(timeout=0.2, retries=1, backoff=0.0))
    assert out.scores.tolist() == pytest.approx([0.1]) and out.details == [{"call": 1}]
    reward.threads[0].join()  # the abandoned call answers now
    assert reward.returned == [1, 0] and out.scores.tolist() == pytest.approx([0.1]) and out.details == [{"call": 1}]
    nxt = score(reward, IMAGES, PROMPTS, CallPolicy(timeout=0.2))  # the late 0.9 is nobody's answer
    assert nxt.scores.tolist() == pytest.approx([0.3]) and nxt.details == [{"call": 2}]


def test_a_transient_error_is_retried_with_backoff_and_the_retry_answers():
    reward = Answers([0.0, 0.0, 0.7], raise_={0: TransientRewardError("HTTP 503"), 1: TransientRewardError("HTTP 429")})
    retried = []
    out = score(reward, IMAGES, PROMPTS, CallPolicy(retries=3, backoff=0.01), on_retry=lambda n, err, delay: retried.append((n, str(err), delay)))
    assert out.scores.tolist() == pytest.approx([0.7]) and reward.calls == 3
    assert retried == [(1, "HTTP 503", 0.01), (2, "HTTP 429", 0.02)]


def test_retries_are_bounded_and_a_non_transient_error_is_not_retried():
    flaky = Answers([0.5] * 4, raise_={i: TransientRewardError(f"down {i}") for i in range(4)})
    with pytest.raises(TransientRewardError, match="down 2"):
        score(flaky, IMAGES, PROMPTS, CallPolicy(retries=2, backoff=0.0))
    assert flaky.calls == 3
    broken = Answers([0.5, 0.5], raise_={0: KeyError("no such tag")})
    with pytest.raises(KeyError, match="no such tag"):
        score(broken, IMAGES, PROMPTS, CallPolicy(timeout=1.0, retries=2, backoff=0.0))
    assert broken.calls == 1


def test_the_worker_thread_computes_under_the_callers_grad_and_autocast_state():
    seen = []

    def probe(images, prompts):
        seen.append((torch.is_grad_enabled(), torch.is_autocast_enabled("cpu"), torch.get_autocast_dtype("cpu")))
        return torch.full((len(images),), 0.5)

    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        score(probe, IMAGES, PROMPTS, CallPolicy(timeout=5.0))
    score(probe, IMAGES, PROMPTS, CallPolicy(timeout=5.0))
    assert seen[0] == (False, True, torch.bfloat16) and seen[1][:2] == (True, False)


@pytest.mark.parametrize("bad", [torch.tensor(0.3), {1, 2}, Image.new("RGB", (1, 1))], ids=["tensor", "set", "image"])
def test_details_that_are_not_json_serialisable_are_an_error_naming_reward_prompt_and_key(bad):
    def reward(images, prompts):
        return RewardOutput(torch.full((len(images),), 0.5), [{"ok": 1.0, "boxes": bad}] * len(images))

    wrapped = Answers([0.5])
    wrapped.evaluate = reward
    with pytest.raises(ValueError, match=r"reward 'answers', image 0 \(prompt 7\): details key 'boxes' is not JSON-serialisable"):
        score(wrapped, IMAGES, PROMPTS)


def test_details_must_be_one_dict_per_image():
    wrapped = Answers([0.5])
    wrapped.evaluate = lambda images, prompts: RewardOutput(torch.full((1,), 0.5), [{}, {}])
    with pytest.raises(ValueError, match="returned 2 details for 1 images"):
        score(wrapped, IMAGES, PROMPTS)
