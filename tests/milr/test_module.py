"""MILRModule on the tiny model: modes, stopping, selection, latents-only state, gradients,
precision, refill equivalence, the policy-gradient mechanics and rewards that fail or hang."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from lightning import Callback
from lightning.pytorch.callbacks import EarlyStopping

import milr
from data.prompt import Prompt
from milr.backbone import JanusBackbone
from milr.module import MILRModule, prompt_seed
from milr.objective import prefix_length, token_log_prob
from milr.prompts import image_prompt, think_text
from milr.state import StopReason
from rewards.base import Reward, RewardOutput, TransientRewardError
from tests.helpers import ConstantReward, ScriptedReward, UnreliableReward, mean_brightness

PROMPTS = ["a red apple", "a blue cup", "a green bird on a branch", "a yellow taxi"]
PROMPTS_5 = PROMPTS + ["two black dogs"]


class Recorder(Callback):
    """Captures, per step, the latents before/after the optimiser step and what was scored."""

    def __init__(self) -> None:
        self.before: list[list[torch.Tensor]] = []
        self.after: list[list[torch.Tensor]] = []
        self.grads: list[list[torch.Tensor | None]] = []
        self.scored: list[list[tuple[int, int, object]]] = []

    def on_after_backward(self, trainer, pl_module) -> None:
        self.grads.append([None if p.grad is None else p.grad.clone() for p in pl_module.parameters()])

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        self.before.append([p.detach().clone() for p in pl_module.parameters()])

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.after.append([p.detach().clone() for p in pl_module.parameters()])
        self.scored.append([(s.prompt.index, s.step, s.last) for s in pl_module.scored])


def run(tiny, prompts=PROMPTS[:1], reward=None, **kw):
    kw.setdefault("image_ratio", 0.25)
    kw.setdefault("max_steps", 3)
    return milr.optimize(prompts, tiny, reward or ConstantReward(0.5), **kw)


@pytest.mark.parametrize("mode", ["text", "image", "both"])
def test_each_mode_runs_the_step_budget(tiny, mode):
    results = run(tiny, PROMPTS[:2], mode=mode, batch_size=2)
    assert [r.prompt.index for r in results] == [0, 1]
    for r in results:
        assert r.steps == 3 and len(r.rewards) == 4 and r.stop_reason is StopReason.MAX_STEPS
        assert r.image.size == (16, 16) and r.initial_image.size == (16, 16)


def test_image_ratio_flooring_to_zero_is_a_clear_error(tiny):
    with pytest.raises(ValueError, match="floors to 0"):
        run(tiny, image_ratio=0.01)  # 0.01 × 16 tokens


def test_text_ratio_flooring_to_zero_is_a_documented_no_op(tiny):
    [result] = run(tiny, mode="text", text_ratio=0.05)  # 0.05 × 12 think tokens → 0
    assert result.stop_reason is StopReason.EMPTY_PREFIX and result.steps == 0 and len(result.rewards) == 1


def test_state_dict_and_parameters_hold_only_the_latents(tiny):
    module = MILRModule(tiny, ConstantReward(), batch_size=3, image_ratio=0.25)
    keys = list(module.state_dict())
    assert keys and all(k.startswith(("text_latents.", "image_latents.")) for k in keys)
    assert len(keys) == 6 and len(list(module.parameters())) == 6
    assert all(p.dtype == torch.float32 for p in module.parameters())


def test_backbone_is_bit_identical_after_a_run_and_gets_no_gradient(tiny):
    before = {k: v.clone() for k, v in tiny.model.state_dict().items()}
    rec = Recorder()
    run(tiny, PROMPTS[:2], batch_size=2, lr=0.5, callbacks=[rec])
    assert all(torch.equal(before[k], v) for k, v in tiny.model.state_dict().items())
    assert all(p.grad is None for p in tiny.model.parameters())
    assert rec.grads and all(g is not None and torch.isfinite(g).all() and g.abs().sum() > 0 for g in rec.grads[0])


@pytest.mark.parametrize("precision", ["32-true", "bf16-mixed"])
def test_latent_gradients_exist_and_are_finite_under_each_precision(tiny, precision):
    rec = Recorder()
    [result] = run(tiny, callbacks=[rec], precision=precision, max_steps=2)
    assert len(rec.grads) == 3  # steps 0 and 1 update; step 2 only scores (budget used up)
    assert all(g is None for g in rec.grads[2])
    for step in rec.grads[:2]:
        assert all(g is not None and torch.isfinite(g).all() and g.abs().sum() > 0 for g in step)
    assert all(not torch.equal(b, a) for b, a in zip(rec.before[0], rec.after[0]))  # the latents moved


def test_bf16_weights_with_static_cache_train_fp32_latents():
    """The GPU fast path's dtypes (bf16 weights, fp32 latents, static KV cache), run on CPU."""
    bb = JanusBackbone.tiny(seed=0, grid=4, dtype="bfloat16", static_cache=True)
    rec = Recorder()
    [result] = run(bb, callbacks=[rec], max_steps=2, mode="both")
    assert bb.model.dtype == torch.bfloat16 and len(result.rewards) == 3
    assert all(p.dtype == torch.float32 for p in rec.after[0])
    assert all(g is not None and g.dtype == torch.float32 and torch.isfinite(g).all() and g.abs().sum() > 0 for g in rec.grads[0])
    assert all(not torch.equal(b, a) for b, a in zip(rec.before[0], rec.after[0]))


def test_a_prompt_stops_on_its_own_threshold_while_the_other_continues(tiny):
    reward = ScriptedReward({0: [0.2, 0.95], 1: [0.1, 0.2, 0.3, 0.4]})
    rec = Recorder()
    r0, r1 = run(tiny, PROMPTS[:2], reward=reward, batch_size=2, reward_threshold=0.9, callbacks=[rec])
    assert (r0.stop_reason, r0.steps) == (StopReason.THRESHOLD, 1) and r0.rewards == pytest.approx([0.2, 0.95])
    assert r1.stop_reason is StopReason.MAX_STEPS and r1.steps == 3
    # after prompt 0 stopped (step 1), its slot's latents get no gradient (None, not zero)
    n_text = len(rec.grads[1]) // 2
    assert rec.grads[1][0] is None and rec.grads[1][n_text] is None
    assert rec.grads[1][1] is not None


@pytest.mark.parametrize(("select", "expected"), [("best", 0.8), ("last", 0.3)])
def test_select_best_or_last_and_final_reward_is_the_last_steps(tiny, select, expected):
    rec = Recorder()
    [result] = run(tiny, reward=ScriptedReward({0: [0.2, 0.8, 0.3]}), max_steps=2, select=select, callbacks=[rec])
    assert result.selected_reward == pytest.approx(expected) and result.best_reward == pytest.approx(0.8)
    assert result.final_reward == pytest.approx(0.3)  # the last step's, whatever was selected
    step_images = {step: sample.image for (_, step, sample) in (s[0] for s in rec.scored)}
    assert result.image is step_images[1 if select == "best" else 2]


def test_stock_early_stopping_on_reward_min_ends_the_whole_fit(tiny):
    reward = ScriptedReward({i: [0.1, 0.7] for i in range(4)})
    stop = EarlyStopping(monitor="reward/min", mode="max", stopping_threshold=0.6, patience=100)
    results = run(tiny, PROMPTS, reward=reward, batch_size=2, max_steps=10, callbacks=[stop])
    assert [r.prompt.index for r in results] == [0, 1]  # prompts 2 and 3 never started
    assert all(r.stop_reason is StopReason.FIT_END and r.steps == 1 for r in results)


def test_nonfinite_latents_stop_the_prompt_and_keep_its_best_image(tiny):
    class Poison(Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            if trainer.global_step == 2:
                pl_module.image_latents[0].data.fill_(float("nan"))

    [result] = run(tiny, reward=ScriptedReward({0: [0.1, 0.6, 0.2, 0.3, 0.4, 0.5]}), max_steps=5, callbacks=[Poison()])
    assert result.stop_reason is StopReason.NONFINITE and result.best_reward == pytest.approx(0.6)


def test_out_of_range_reward_is_an_error_naming_the_prompts(tiny):
    with pytest.raises(ValueError, match=r"outside \[0, 1\]") as err:
        run(tiny, reward=ConstantReward(1.5))
    assert any("failed on prompts [0]" in note for note in err.value.__notes__)


def test_plain_function_rewards_are_accepted(tiny):
    [result] = run(tiny, reward=mean_brightness, max_steps=1)
    assert 0.0 <= result.best_reward <= 1.0 and len(result.rewards) == 2


def test_batched_refill_gives_the_same_results_as_each_prompt_alone(tiny):
    """Continuous refill: 4 prompts through 2 slots (prompts stop at different steps) equal
    4 separate runs with the same per-prompt seeds. The tiny model in fp32 reproduces the
    sampled tokens exactly; batched kernels (the VQ decoder's convolutions at another batch
    size) may round differently, so rewards are compared to 1e-5 and pixels to one level of
    255 — a different token would change whole patches."""
    reward = ScriptedReward({0: [0.1, 0.2, 0.95], 1: [0.1] * 9, 2: [0.99], 3: [0.1, 0.96]})
    kw = dict(max_steps=4, reward_threshold=0.9, seed=7)
    batched = run(tiny, PROMPTS, reward=reward, batch_size=2, **kw)
    alone = []
    for i, text in enumerate(PROMPTS):
        script = {i: reward.script[i]}
        alone += run(tiny, [milr.api.as_prompts(PROMPTS)[i]], reward=ScriptedReward(script), **kw)
    for b, a in zip(batched, alone):
        assert b.rewards == pytest.approx(a.rewards, abs=1e-5) and b.steps == a.steps and b.text == a.text
        diff = np.abs(np.asarray(b.image, dtype=int) - np.asarray(a.image, dtype=int))
        assert diff.max() <= 1, f"prompt {b.prompt.index}: images differ by up to {diff.max()} levels"
    assert [r.steps for r in batched] == [2, 4, 0, 1]


def test_lr_zero_reproduces_plain_resampling_exactly(tiny):
    """With lr = 0 the latents never move: every step is a fresh sample of the same prefix
    distribution plus CFG continuation — best-of-N re-sampling with the prompt's generator."""
    rec = Recorder()
    [result] = run(tiny, lr=0.0, max_steps=3, mode="both", text_ratio=0.5, callbacks=[rec])
    images = [s[0][2].image for s in rec.scored]
    # the same thing by hand, with the backbone only
    g = torch.Generator().manual_seed(prompt_seed(0, 0))
    think = tiny.think([PROMPTS[0]], record_hidden=True)
    z_t = think.hidden[0][: prefix_length(0.5, len(think.hidden[0]))]
    lv = prefix_length(0.25, tiny.num_image_tokens)
    s0 = tiny.sample_image(tiny.image_context([image_prompt(PROMPTS[0], think_text(think.texts[0]))]), [g], record_hidden=lv)
    expected = tiny.decode_images(s0.tokens)
    for _ in range(3):
        text = think_text(tiny.think([PROMPTS[0]], [tiny.text_logits(z_t).argmax(-1)]).texts[0])
        ctx = tiny.image_context([image_prompt(PROMPTS[0], text)])
        prefix = tiny.sample_prefix(s0.hidden, [g])
        expected += tiny.decode_images(tiny.sample_image(ctx, [g], prefix).tokens)
    assert [im.tobytes() for im in images] == [im.tobytes() for im in expected]
    assert result.text == think_text(think.texts[0])


def _log_probs(tiny, params, sample):
    text, image = params
    return float(token_log_prob(tiny.text_logits(text), sample.text_prefix) + token_log_prob(tiny.image_logits(image), sample.image_prefix))


@pytest.mark.parametrize(("value", "moves"), [(0.3, True), (1.0, False)])
def test_one_reference_step_lowers_the_log_prob_of_the_tokens_used_unless_reward_is_one(tiny, value, moves):
    rec = Recorder()
    run(tiny, reward=ConstantReward(value), max_steps=1, text_ratio=0.5, callbacks=[rec])
    before, after = rec.before[0], rec.after[0]
    sample = rec.scored[0][0][2]  # the stage-0 sample whose loss was taken
    lp_before, lp_after = _log_probs(tiny, before, sample), _log_probs(tiny, after, sample)
    if moves:
        assert lp_after < lp_before
    else:
        assert all(torch.equal(b, a) for b, a in zip(before, after))


def test_rloo_updates_from_stage_0_and_raises_above_average_and_lowers_below_average_samples(tiny):
    # stage 0: the plain sample scores 0.5, then the two candidates from the fresh latents 1 and 0
    reward = ScriptedReward({0: [0.5, 1.0, 0.0]})

    class Samples(Callback):
        def on_after_backward(self, trainer, pl_module):
            if not hasattr(self, "samples"):
                self.samples = list(pl_module.scored[0].samples)

    rec, grab = Recorder(), Samples()
    [result] = run(tiny, reward=reward, estimator="rloo", samples_per_step=2, optimizer="sgd", lr=1e-2,
                   max_steps=2, text_ratio=0.5, callbacks=[rec, grab])
    assert result.history[0].sample_rewards == [0.5, 1.0, 0.0]  # plain sample first, then the K
    assert result.history[0].reward == 1.0 and result.history[0].mean_reward == 0.5  # best of all; mean of the K
    assert sum(any(g is not None for g in grads) for grads in rec.grads) == 2  # max_steps updates
    good, bad = grab.samples
    assert (good.reward, bad.reward) == (1.0, 0.0)
    assert not (torch.equal(good.text_prefix, bad.text_prefix) and torch.equal(good.image_prefix, bad.image_prefix))
    before, after = rec.before[0], rec.after[0]
    assert _log_probs(tiny, after, good) > _log_probs(tiny, before, good)
    assert _log_probs(tiny, after, bad) < _log_probs(tiny, before, bad)


def test_think_text_is_redecoded_only_when_the_text_prefix_changes(tiny, monkeypatch):
    calls = []
    real = tiny.think

    def spy(prompts, prefixes=None, **kw):
        calls.append([None if p is None else p.tolist() for p in (prefixes or [None] * len(prompts))])
        return real(prompts, prefixes, **kw)

    monkeypatch.setattr(tiny, "think", spy)
    rec = Recorder()
    [moved] = run(tiny, mode="text", text_ratio=0.5, lr=5.0, max_steps=4, callbacks=[rec])
    prefixes = [s[0][2].text_prefix.tolist() for s in rec.scored]  # per step, the prefix used
    changes = sum(a != b for a, b in zip(prefixes, prefixes[1:]))
    assert changes >= 1  # a large step moves the argmax
    assert len(calls) == 1 + changes  # stage 0 + one decode per new prefix, none for repeats
    assert all(c[0] == p for c, p in zip(calls[1:], [b for a, b in zip(prefixes, prefixes[1:]) if a != b]))
    calls.clear()
    run(tiny, mode="text", text_ratio=0.5, lr=0.0, max_steps=3)
    assert len(calls) == 1  # lr 0: the prefix never changes, the stage-0 text is reused


def test_authors_image_mode_generates_no_think_text_and_takes_z_v_from_the_bare_prompt_image(tiny, monkeypatch):
    calls = []
    real = tiny.think
    monkeypatch.setattr(tiny, "think", lambda *a, **kw: calls.append(a) or real(*a, **kw))
    rec = Recorder()
    [result] = run(tiny, mode="image", image_mode_think=False, max_steps=1, callbacks=[rec])
    assert calls == [] and result.text == ""
    g = torch.Generator().manual_seed(prompt_seed(0, 0))
    lv = prefix_length(0.25, tiny.num_image_tokens)
    s0 = tiny.sample_image(tiny.image_context([image_prompt(PROMPTS[0], None)]), [g], record_hidden=lv)
    [z_v] = rec.before[0]
    assert torch.equal(z_v, s0.hidden[0])
    assert result.initial_image.tobytes() == tiny.decode_images(s0.tokens)[0].tobytes()


def test_bf16_latents_are_stepped_by_adam_in_bf16(tiny):
    rec = Recorder()
    run(tiny, latent_dtype="bfloat16", max_steps=2, text_ratio=0.5, callbacks=[rec])
    assert all(p.dtype == torch.bfloat16 for p in rec.before[0] + rec.after[0])
    assert any(not torch.equal(b, a) for b, a in zip(rec.before[0], rec.after[0]))


def test_quirk_options_are_validated(tiny):
    with pytest.raises(ValueError, match="argmax"):
        MILRModule(tiny, ConstantReward(), image_loss_tokens="argmax", estimator="rloo", samples_per_step=2, image_ratio=0.25)
    with pytest.raises(ValueError, match="latent_dtype"):
        MILRModule(tiny, ConstantReward(), latent_dtype="float64", image_ratio=0.25)
    with pytest.raises(ValueError, match="prompt_format"):
        MILRModule(tiny, ConstantReward(), prompt_format="chatml", image_ratio=0.25)
    with pytest.raises(ValueError, match="mode='both'"):
        MILRModule(tiny, ConstantReward(), mode="image", step_order="text_image", image_ratio=0.25)


# ---------------------------------------------------------------- rewards that fail or hang
class Grab(Callback):
    def on_train_end(self, trainer, pl_module) -> None:
        self.module = pl_module


def failures(module) -> list[tuple[int, int]]:
    return [(f.prompt.index, f.step) for f in module.failed]


def test_skip_fails_only_the_prompt_whose_reward_breaks_and_the_others_complete(tiny):
    grab = Grab()
    reward = UnreliableReward(fail_prompts=[1], transient=False)
    results = run(tiny, PROMPTS[:3], reward=reward, batch_size=2, on_reward_failure="skip", callbacks=[grab])
    # prompts 0 and 1 share the first call: asked again one by one, only prompt 1 fails
    assert [(r.prompt.index, r.steps, r.stop_reason) for r in results] == [(0, 3, StopReason.MAX_STEPS), (2, 3, StopReason.MAX_STEPS)]
    assert failures(grab.module) == [(1, 0)]
    assert "reward 'unreliable': RuntimeError: reward server went away" in grab.module.failed[0].reason
    assert grab.module.slots == [None, None] and grab.module.retries == 0  # not transient: never repeated


def test_skip_mid_run_frees_the_failed_prompts_slot_for_the_next_one(tiny):
    grab, rec = Grab(), Recorder()
    results = run(tiny, PROMPTS[:2], reward=UnreliableReward(fail_calls=[3], transient=False), on_reward_failure="skip",
                  callbacks=[grab, rec])
    assert failures(grab.module) == [(0, 2)]  # steps 0 and 1 scored, step 2's call failed
    assert [(r.prompt.index, r.steps) for r in results] == [(1, 3)]
    assert [[i for i, _, _ in step] for step in rec.scored] == [[0], [0], [], [1], [1], [1], [1]]


def test_a_hanging_reward_times_out_is_retried_and_skip_fails_its_prompt(tiny):
    grab = Grab()
    reward = UnreliableReward(fail_prompts=[0], hang=2.0)  # answers, but only after 2 s
    results = run(tiny, PROMPTS[:2], reward=reward, max_steps=1, reward_timeout=0.2, reward_retries=1, reward_backoff=0.0,
                  on_reward_failure="skip", callbacks=[grab])
    assert [r.prompt.index for r in results] == [1] and failures(grab.module) == [(0, 0)]
    assert "RewardTimeout: no answer within 0.2 s" in grab.module.failed[0].reason
    assert grab.module.retries == 1 and grab.module.trainer.callback_metrics["reward/retries"] == 1


def test_a_transient_error_answered_on_retry_gives_the_undisturbed_runs_result(tiny):
    grab = Grab()
    [steady] = run(tiny, reward=UnreliableReward())
    [flaky] = run(tiny, reward=UnreliableReward(fail_calls=[2, 3]), reward_retries=2, reward_backoff=0.0, callbacks=[grab])
    assert flaky.rewards == steady.rewards and flaky.steps == 3  # call 4 answered step 1
    assert grab.module.retries == 2 and grab.module.trainer.callback_metrics["reward/retries"] == 2


def test_under_stop_errors_end_the_run_naming_the_prompts_after_bounded_retries_of_transient_ones(tiny):
    transient = UnreliableReward(fail_calls=[2, 3, 4])
    with pytest.raises(TransientRewardError, match=r"call 4") as err:
        run(tiny, reward=transient, reward_retries=2, reward_backoff=0.0)
    assert transient.calls == 4 and any("failed on prompts [0]" in note for note in err.value.__notes__)
    broken = UnreliableReward(fail_calls=[2], transient=False)
    with pytest.raises(RuntimeError, match=r"call 2"):
        run(tiny, reward=broken, reward_retries=2, reward_backoff=0.0)
    assert broken.calls == 2  # not transient: not repeated


def test_details_that_are_not_json_are_an_error_before_the_prompt_is_optimised(tiny):
    class TensorDetails(Reward):
        name = "tensor_details"
        calls = 0

        def evaluate(self, images, prompts):
            self.calls += 1
            return RewardOutput(torch.full((len(images),), 0.5), [{"mask": torch.ones(2)} for _ in images])

    reward, rec = TensorDetails(), Recorder()
    with pytest.raises(ValueError, match=r"reward 'tensor_details', image 0 \(prompt 0\): details key 'mask' is not JSON"):
        run(tiny, reward=reward, callbacks=[rec])
    assert reward.calls == 1 and rec.before == []  # the first call, no optimiser step


@pytest.mark.parametrize(("option", "value", "message"), [
    ("reward_timeout", 0.0, "reward_timeout must be > 0"),
    ("reward_retries", -1, "reward_retries must be >= 0"),
    ("reward_backoff", -0.5, "reward_backoff must be >= 0"),
    ("on_reward_failure", "ignore", "on_reward_failure must be 'stop'"),
])
def test_bad_reward_call_options_are_refused_naming_the_option(tiny, option, value, message):
    with pytest.raises(ValueError, match=message):
        MILRModule(tiny, ConstantReward(), image_ratio=0.25, **{option: value})


class PrefillLog(Callback):
    """Per step: the think and image prompt rows the backbone prefilled, the (prompt, text) rows
    every scored prompt used, and how many rows the module's caches hold at the step's end."""

    def __init__(self, bb: JanusBackbone, monkeypatch) -> None:
        self.prefilled: list[dict[str, list[str]]] = []
        self.used: list[list[tuple[int, str]]] = []
        self.held: list[tuple[int, int, int]] = []
        for name in ("think_rows", "image_rows"):
            real = getattr(bb, name)

            def spy(prompts, *args, _real=real, _name=name):
                self.prefilled[-1][_name] += list(prompts)
                return _real(prompts, *args)

            monkeypatch.setattr(bb, name, spy)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.prefilled.append({"think_rows": [], "image_rows": []})

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.used.append([(s.prompt.index, s.samples[0].text) for s in pl_module.scored])
        self.held.append((len(pl_module.active()), len(pl_module.decoder.think_prompts), len(pl_module.decoder.image_prompts)))


REFILL = dict(mode="both", text_ratio=0.5, lr=5.0, max_steps=4, reward_threshold=0.9, seed=7, batch_size=2)


def _refill_run(bb, reuse: bool, callbacks=(), prompts=None, **options):
    """Five prompts through two slots, stopping at different steps; lr 5 moves the text prefix."""
    bb.reuse_prompts = reuse
    reward = ScriptedReward({0: [0.1, 0.2, 0.95], 1: [0.1] * 9, 2: [0.99], 3: [0.1, 0.96], 4: [0.1] * 9})
    rec = Recorder()
    try:
        results = run(bb, prompts or PROMPTS_5, reward=reward, callbacks=[rec, *callbacks], **{**REFILL, **options})
    finally:
        bb.reuse_prompts = True
    steps = [[(i, n, s.text, s.text_prefix.tolist(), s.image_prefix.tolist(), s.image.tobytes()) for i, n, s in step] for step in rec.scored]
    return results, steps


# modes, both prompt formats (the reference one re-generates text mode's image from another
# prompt than stage 0's), the authors' image mode (no think text) and rloo (stage-0 candidates,
# several think texts of one prompt in one decode)
KEPT_CASES = {
    "both": dict(),
    "image": dict(mode="image"),
    "text-reference": dict(mode="text", prompt_format="reference"),
    "image-reference-no-think": dict(mode="image", prompt_format="reference", image_mode_think=False),
    "both-rloo": dict(estimator="rloo", samples_per_step=2),
    "text-reference-rloo": dict(mode="text", prompt_format="reference", estimator="rloo", samples_per_step=2),
}


@pytest.mark.parametrize("case", list(KEPT_CASES))
def test_kept_prompt_rows_give_exactly_the_tokens_of_prefilling_every_prompt_again(tiny, case):
    """Refills and changed think texts: the per-row caches decode what the earlier rule (think
    prompt prefilled at every think decode, image prompts whenever one changed) decodes."""
    options = KEPT_CASES[case]
    kept, kept_steps = _refill_run(tiny, reuse=True, **options)
    again, again_steps = _refill_run(tiny, reuse=False, **options)
    assert kept_steps == again_steps
    assert [(r.text, r.rewards, r.image.tobytes()) for r in kept] == [(r.text, r.rewards, r.image.tobytes()) for r in again]
    texts = [{(i, text) for i, _, text, *_ in step} for step in kept_steps]
    if options.get("mode", "both") != "image":
        assert len(set().union(*texts)) > 2 * len(kept)  # the think texts did change along the way


def test_kept_prompt_rows_decode_what_a_fresh_prefill_decodes_with_a_static_cache_and_repeats(tiny):
    """Static cache, and two repeats of one prompt running side by side: each repeat (its ``uid``)
    keeps its own rows, and one stopping does not drop the other's."""
    static = JanusBackbone.tiny(seed=0, grid=4, max_think_tokens=12, static_cache=True)
    prompts = [Prompt(text, i // 2, key=f"{i // 2:05d}", repeat=i % 2) for i, text in enumerate(["a red apple"] * 2 + ["a blue cup"] * 2)]
    for bb, options in ((static, {}), (tiny, dict(prompts=prompts))):
        kept, kept_steps = _refill_run(bb, reuse=True, **options)
        again, again_steps = _refill_run(bb, reuse=False, **options)
        assert kept_steps == again_steps
        assert [(r.text, r.rewards, r.image.tobytes()) for r in kept] == [(r.text, r.rewards, r.image.tobytes()) for r in again]


def test_only_new_prompts_and_changed_think_texts_are_prefilled_and_stopped_prompts_are_dropped(tiny, monkeypatch):
    with monkeypatch.context() as patch:
        log = PrefillLog(tiny, patch)
        _refill_run(tiny, reuse=True, callbacks=[log])
    last_text: dict[int, str] = {}
    for step, (prefilled, used) in enumerate(zip(log.prefilled, log.used)):
        new = [i for i, _ in used if i not in last_text]
        changed = [(i, text) for i, text in used if last_text.get(i) != text]
        assert len(prefilled["think_rows"]) == len(new)  # a think prompt is prefilled once, at admission
        assert sorted(prefilled["image_rows"]) == sorted(image_prompt(PROMPTS_5[i], text) for i, text in changed)
        last_text.update(used)
    assert all(think == image == active for active, think, image in log.held)  # one row per running prompt, no more
    with monkeypatch.context() as patch:
        before = PrefillLog(tiny, patch)
        _refill_run(tiny, reuse=False, callbacks=[before])
    count = lambda log, name: sum(len(p[name]) for p in log.prefilled)  # noqa: E731
    assert count(log, "think_rows") < count(before, "think_rows")  # the earlier rule prefilled it at every think decode
    assert count(log, "image_rows") <= count(before, "image_rows")  # equal here: every think text changes every step
