"""The methods compared at equal cost (milr.methods) and the monitors, on the tiny model:
what each method decodes, what it is charged, what its update optimises."""

from __future__ import annotations

import pytest
import torch

from milr.methods import reward_call_budget, step_budget
from milr.module import prompt_seed
from milr.options import check_options
from milr.prompts import image_prompt, think_text
from milr.state import StopReason
from rewards.base import Reward, RewardOutput
from tests.helpers import ScriptedReward, mean_brightness
from tests.milr.test_module import PROMPTS, Recorder, run


class Brightness(Reward):
    """A monitor: mean brightness, counting the images it scores."""

    name = "brightness"

    def __init__(self) -> None:
        self.images = 0

    def evaluate(self, images, prompts):
        self.images += len(images)
        return RewardOutput(mean_brightness(images, prompts))


def same(a: list, b: list) -> bool:
    """Two steps' gradients are equal (``None`` where a latent got none)."""
    return len(a) == len(b) and all((x is None and y is None) or (x is not None and y is not None and torch.equal(x, y)) for x, y in zip(a, b))


def test_base_is_the_stage_0_image_scored_once(tiny):
    [milr] = run(tiny, max_steps=3)
    reward = ScriptedReward({0: [0.4]})
    [base] = run(tiny, reward=reward, max_steps=3, method="base")
    assert base.image.tobytes() == milr.initial_image.tobytes() == base.initial_image.tobytes()
    assert (base.steps, base.reward_calls, base.decoded_images, base.selected_step) == (0, 1, 1, 0)
    assert reward.seen == {0: 1} and base.method == "base" and base.rewards == pytest.approx([0.4])
    assert base.text == base.initial_text == milr.initial_text


def test_best_of_n_resamples_the_stage_0_prompt_from_the_prompts_generator_without_latents(tiny):
    rec = Recorder()
    [result] = run(tiny, method="best_of_n", best_of_n=4, mode="both", text_ratio=0.5, callbacks=[rec])
    images = [s[0][2].image for s in rec.scored]
    # the same by hand: stage 0, then three more images of the same prompt from the same generator
    g = torch.Generator().manual_seed(prompt_seed(0, 0))
    text = think_text(tiny.think([PROMPTS[0]]).texts[0])
    ctx = tiny.image_context([image_prompt(PROMPTS[0], text)])
    expected = [tiny.decode_images(tiny.sample_image(ctx, [g]).tokens)[0] for _ in range(4)]
    assert [im.tobytes() for im in images] == [im.tobytes() for im in expected]
    assert len({im.tobytes() for im in images}) == 4  # independent samples, not one image four times
    assert all(g is None for grads in rec.grads for g in grads)  # no update: the latents get no gradient
    assert result.text == result.initial_text == text and {h.text for h in result.history} == {text}


@pytest.mark.parametrize("max_steps", [0, 2, 10])
def test_best_of_n_is_never_charged_more_than_n_reward_calls(tiny, max_steps):
    reward = ScriptedReward({0: [0.1, 0.2, 0.3, 0.4, 0.5]})
    [result] = run(tiny, reward=reward, method="best_of_n", best_of_n=3, max_steps=max_steps)
    assert reward.seen == {0: 3} and result.reward_calls == 3 and result.decoded_images == 3
    assert result.rewards == pytest.approx([0.1, 0.2, 0.3]) and result.stop_reason is StopReason.MAX_STEPS
    assert [h.reward_calls for h in result.history] == [1, 2, 3]


def test_best_of_n_stops_at_the_first_image_over_the_threshold(tiny):
    reward = ScriptedReward({0: [0.1, 0.95, 0.99]})
    [result] = run(tiny, reward=reward, method="best_of_n", best_of_n=3, reward_threshold=0.9)
    assert result.stop_reason is StopReason.THRESHOLD and reward.seen == {0: 2} and result.reward_calls == 2
    assert result.selected_reward == pytest.approx(0.95) and result.selected_step == 1


@pytest.mark.parametrize(("estimator", "k"), [("reference", 1), ("reference", 2), ("rloo", 2)])
def test_best_of_n_and_milr_are_charged_the_same_reward_calls_at_the_same_budget(tiny, estimator, k):
    counts = {}
    for method in ("milr", "best_of_n"):
        reward = ScriptedReward({0: [0.5]})
        [result] = run(tiny, reward=reward, method=method, estimator=estimator, samples_per_step=k, max_steps=3)
        assert result.reward_calls == result.decoded_images == reward.seen[0] == result.history[-1].reward_calls
        counts[method] = result.reward_calls
    assert counts["milr"] == counts["best_of_n"] == reward_call_budget(3, estimator, k)
    assert reward_call_budget(3, "reference", 1) == 4  # max_steps + 1


def test_selected_step_is_the_step_the_returned_image_comes_from(tiny):
    rec = Recorder()
    for select, step in (("best", 1), ("last", 2)):
        [result] = run(tiny, reward=ScriptedReward({0: [0.2, 0.8, 0.3]}), max_steps=2, select=select, callbacks=[rec])
        assert result.selected_step == step and result.history[step].reward == result.selected_reward
        assert result.image is rec.scored[-3 + step][0][2].image


def test_anti_reward_records_r_and_updates_towards_one_minus_r(tiny):
    script = [0.2, 0.7, 0.4, 0.9]
    anti_rec, milr_flipped_rec, milr_rec = Recorder(), Recorder(), Recorder()
    [anti] = run(tiny, reward=ScriptedReward({0: script}), method="anti_reward", callbacks=[anti_rec])
    [flipped] = run(tiny, reward=ScriptedReward({0: [1 - r for r in script]}), callbacks=[milr_flipped_rec])
    run(tiny, reward=ScriptedReward({0: script}), callbacks=[milr_rec])
    assert anti.rewards == pytest.approx(script) and anti.method == "anti_reward"  # R is what is recorded
    assert anti.selected_reward == pytest.approx(0.9) and [h.mean_reward for h in anti.history] == pytest.approx(script)
    updates = anti_rec.grads[:3]  # 3 updates; the 4th step only scores (budget used up)
    assert all(g is not None and g.abs().sum() > 0 for grads in updates for g in grads)
    for a, f, m in zip(updates, milr_flipped_rec.grads, milr_rec.grads):
        assert same(a, f)  # its gradient is MILR's on 1 - R
        assert not any(torch.allclose(x, y) for x, y in zip(a, m))  # not MILR's on R


def test_monitors_score_initial_and_selected_and_never_enter_the_loss(tiny):
    monitor = Brightness()
    with_rec, without_rec = Recorder(), Recorder()
    reward = lambda: ScriptedReward({0: [0.2, 0.8, 0.3, 0.1]})  # noqa: E731
    [watched] = run(tiny, reward=reward(), monitors=[monitor], callbacks=[with_rec])
    [plain] = run(tiny, reward=reward(), callbacks=[without_rec])
    assert len(with_rec.grads) == len(without_rec.grads) == 4
    assert all(same(a, b) for a, b in zip(with_rec.grads, without_rec.grads))  # the monitor changes no gradient
    assert watched.rewards == plain.rewards and watched.image.tobytes() == plain.image.tobytes()
    score = lambda image: float(mean_brightness([image], [])[0])  # noqa: E731
    assert watched.monitors == {"brightness": {"initial": pytest.approx(score(watched.initial_image)), "selected": pytest.approx(score(watched.image))}}
    assert monitor.images == 2 and not any(h.monitors for h in watched.history)  # initial + selected only
    assert plain.monitors == {}


def test_monitor_every_step_scores_each_steps_image_and_reuses_them(tiny):
    monitor = Brightness()
    rec = Recorder()
    [result] = run(tiny, reward=ScriptedReward({0: [0.2, 0.8, 0.3, 0.1]}), monitors=[monitor, Brightness()],
                   monitor_every_step=True, callbacks=[rec])
    images = [s[0][2].image for s in rec.scored]
    assert [h.monitors["brightness"] for h in result.history] == pytest.approx([float(mean_brightness([i], [])[0]) for i in images])
    assert set(result.monitors) == {"brightness", "brightness_2"}  # a repeated name is numbered
    assert result.monitors["brightness"]["selected"] == result.history[1].monitors["brightness"]
    assert monitor.images == 4  # one per step: the initial score is reused for step 0 and the selected one


def test_a_failing_monitor_is_an_error_naming_it(tiny):
    class Broken(Reward):
        name = "broken_judge"

        def evaluate(self, images, prompts):
            return RewardOutput(torch.full((len(images),), 2.0))

    with pytest.raises(ValueError, match=r"outside \[0, 1\]") as err:
        run(tiny, monitors=[Broken()])
    assert any("monitor 'broken_judge' failed on prompts [0]" in note for note in err.value.__notes__)


def test_method_options_are_checked():
    base = dict(mode="both", text_ratio=0.2, image_ratio=0.1, lr=0.03, max_steps=3, reward_threshold=None,
                estimator="reference", samples_per_step=1, batch_size=1, prefix="model.")
    with pytest.raises(ValueError, match="model.method must be one of"):
        check_options(**base, method="best_of")
    with pytest.raises(ValueError, match="model.best_of_n is N of method 'best_of_n' only"):
        check_options(**base, method="milr", best_of_n=4)
    with pytest.raises(ValueError, match="model.best_of_n must be >= 1"):
        check_options(**base, method="best_of_n", best_of_n=0)
    assert step_budget("base", 20, "reference", 1, None) == 0
    assert step_budget("best_of_n", 20, "reference", 1, None) == 20 and step_budget("best_of_n", 20, "rloo", 2, 5) == 4


def test_initial_reward_is_the_initial_images_also_when_rloo_scores_candidates_at_stage_0(tiny):
    [result] = run(tiny, reward=ScriptedReward({0: [0.5, 1.0, 0.0]}), estimator="rloo", samples_per_step=2, max_steps=1)
    assert result.initial_reward == 0.5 and result.rewards[0] == 1.0  # the plain sample's, not the best of step 0


def test_best_of_n_with_sampled_think_texts_draws_a_fresh_plan_before_each_later_image(tiny):
    rec = Recorder()
    [result] = run(tiny, method="best_of_n", best_of_n=4, best_of_n_think="sample", callbacks=[rec])
    [greedy] = run(tiny, method="best_of_n", best_of_n=4)
    # stage 0 is unchanged (greedy text, the prompt's first image): the methods stay paired by seed
    assert result.initial_text == greedy.initial_text and result.initial_image.tobytes() == greedy.initial_image.tobytes()
    # by hand: each later step samples a think text, then an image, from the prompt's one generator
    g = torch.Generator().manual_seed(prompt_seed(0, 0))
    tiny.decode_images(tiny.sample_image(tiny.image_context([image_prompt(PROMPTS[0], think_text(tiny.think([PROMPTS[0]]).texts[0]))]), [g]).tokens)
    texts, images = [], []
    for _ in range(3):
        text = think_text(tiny.think([PROMPTS[0]], generators=[g]).texts[0])
        texts.append(text)
        images.append(tiny.decode_images(tiny.sample_image(tiny.image_context([image_prompt(PROMPTS[0], text)]), [g]).tokens)[0])
    assert [h.text for h in result.history[1:]] == texts and len(set(texts)) > 1  # sampled, not the greedy text again
    assert [s[0][2].image.tobytes() for s in rec.scored[1:]] == [im.tobytes() for im in images]
    assert result.reward_calls == greedy.reward_calls == 4 and all(g is None for grads in rec.grads for g in grads)


def test_sampled_best_of_n_think_texts_are_refused_for_other_methods():
    with pytest.raises(ValueError, match="model.best_of_n_think is for method 'best_of_n' only"):
        check_options("model.", method="milr", best_of_n_think="sample")
