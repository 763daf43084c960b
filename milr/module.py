"""``MILRModule``: the latent prefixes of the prompts being optimised, as a LightningModule.

One Lightning epoch is one MILR step for every prompt in the batch, so the stock loop,
precision plugins, loggers and callbacks (``EarlyStopping`` included) drive the method.
``training_step`` reads as the algorithm, one call per step:

1. free latent slots are refilled from the prompt stream (the batch): a resumed prompt continues
   where it was saved; a new one gets its think text, initial image and reward (stage 0; it is
   that prompt's step 0) and its latents from their hidden states;
2. every other running prompt is decoded from its current latents and scored (under ``rloo``
   the prompts just admitted first decode K stage-0 candidates from their fresh latents, so the
   first update has its leave-one-out baseline);
3. stop rules run: the threshold and step budget given here, then any callback that defines
   ``on_prompt_scored(trainer, pl_module, state)`` and calls ``pl_module.stop_prompt``;
4. the REINFORCE loss of the prompts still running over the latents the step order
   (``milr.schedule``) names for this step; Lightning's optimiser moves them. A stopped prompt's
   latents get no gradient (``None``), so Adam's momentum cannot move them either.

The parts live in their own modules: the choices of ``method`` / ``mode`` / ``estimator`` /
``select`` resolved once (``milr.plan``), the backbone's decodes (``milr.decoding``), the reward
and monitors under the call policy (``milr.scoring``: a reward call that still fails stops the run
or, with ``on_reward_failure: skip``, fails the prompts it scored while the others carry on) and
the latent slots (``milr.slots``). ``method`` (``milr.methods``) swaps in the baselines at the same
cost: ``base`` stops after stage 0, ``best_of_n`` decodes each later step's image afresh from the
stage-0 image prompt (no latents, no update), ``anti_reward`` updates towards 1 − R.

The frozen backbone is a plain attribute, not a submodule: ``parameters()`` and
``state_dict()`` hold only the latents.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Literal, Sequence

import torch
from lightning import LightningModule

from data.stream import PromptStream
from milr.backbone import JanusBackbone
from milr.decoding import Decoder, prompt_seed
from milr.methods import Method
from milr.objective import Estimator, reinforce_loss
from milr.options import LATENT_DTYPES, MILROptions, Mode
from milr.plan import Plan
from milr.prompts import PromptFormat
from milr.schedule import StepOrder
from milr.scoring import Scorer, named_monitors
from milr.slots import LatentSlots
from milr.state import FailedPrompt, MILRResult, PromptState, Sample, StopReason
from milr.timings import Timings
from rewards.base import Reward, as_reward

__all__ = ["TRAINER_DEFAULTS", "MILRModule", "named_monitors", "prompt_seed"]  # the last two re-exported from their modules
logger = logging.getLogger(__name__)

#: Trainer settings MILR needs: one step per epoch, nothing to validate, no weight checkpoints.
TRAINER_DEFAULTS: dict[str, Any] = {
    "max_epochs": -1,
    "limit_train_batches": 1,
    "num_sanity_val_steps": 0,
    "enable_checkpointing": False,
    "enable_model_summary": False,
    "log_every_n_steps": 1,
}


class MILRModule(LightningModule):
    """Test-time latent optimisation of Janus-Pro (MILR) for a stream of prompts.

    Args:
        backbone: the frozen Janus model (``JanusBackbone``).
        reward: a ``rewards.Reward`` (or any ``(images, prompts) -> Tensor[B]`` in [0, 1]).
        mode: optimise the ``text`` latents, the ``image`` latents, or ``both``.
        text_ratio: share of the think-text tokens whose latents are optimised (floor(ratio · length); paper 0.2).
        image_ratio: share of the image tokens whose latents are optimised (paper 0.02 → 11 of 576).
        lr: learning rate on the fp32 latents (paper 0.03).
        optimizer: ``adam`` (the reference) or ``sgd``.
        max_steps: optimisation steps per prompt (rewards has at most ``max_steps + 1`` entries).
        reward_threshold: a prompt stops once its reward is strictly above this (None: never).
        estimator: ``reference`` (baseline 1, the paper) or ``rloo`` (leave-one-out baseline).
        samples_per_step: candidates decoded per prompt per step (``rloo`` needs ≥ 2).
        seed: base seed; each prompt samples from its own generator seeded from it and its index.
        select: return the ``best``-reward image or the ``last`` one (the reference).
        batch_size: number of latent slots, i.e. prompts optimised at once.
        prompt_format: ``janus`` chat labels at every stage, or the authors' strings (``reference``;
            see ``milr.prompts``).
        image_mode_think: in mode ``image``, keep the think text in the image prompt; ``False`` is
            the authors' image mode (bare prompt, no think text generated, z_v from that image).
        step_order: ``joint`` (every latent after every reward) or one of the authors' ordering
            ablations (``milr.schedule``; mode ``both`` only); ``phase_steps`` is the length of
            the first phase of ``text_image`` / ``image_text`` (default ``max_steps // 2``).
        latent_dtype: ``float32``, or ``bfloat16`` as the reference (Adam on bf16 latents).
        image_loss_tokens: log-probability of the ``sampled`` image prefix tokens the image used,
            or of the ``argmax`` tokens of the latents as the reference (which decodes sampled ones).
        method: ``milr``; or at the same cost ``base`` (the stage-0 image only), ``best_of_n``
            (independent images of the prompt, no latents) or ``anti_reward`` (MILR towards 1 − R,
            R recorded); see ``milr.methods``.
        best_of_n: N, images per prompt of ``best_of_n`` (default: MILR's reward-call budget,
            ``max_steps + 1`` with the reference estimator).
        best_of_n_think: ``greedy`` keeps stage 0's think text for every best-of-N image (only the
            image is re-sampled); ``sample`` draws a fresh think text (temperature 1) before each
            later image, so best-of-N also searches over plans.
        monitors: extra rewards that score the initial and the selected image, logged and
            reported as held-out judges, never optimised.
        monitor_every_step: monitors also score each step's best image (trace ``monitors``).
        reward_timeout: seconds one reward call may take (null: no limit); a call past it is
            abandoned in its worker thread and counts as a transient error.
        reward_retries: repeats of a reward call that timed out or raised ``TransientRewardError``
            (remote judges: network, 429, 5xx), each after a backoff; other errors are not repeated.
        reward_backoff: seconds before the first repeat, doubling each time (capped at 60).
        on_reward_failure: when a reward call still fails, ``stop`` the run (the error names the
            reward and prompts) or ``skip``: mark the prompts of that call failed and carry on.
    """

    def __init__(
        self,
        backbone: JanusBackbone,
        reward: Reward | Callable[[list, list], Any],
        mode: Mode = "both",
        text_ratio: float = 0.2,
        image_ratio: float = 0.02,
        lr: float = 0.03,
        optimizer: Literal["adam", "sgd"] = "adam",
        max_steps: int = 20,
        reward_threshold: float | None = None,
        estimator: Estimator = "reference",
        samples_per_step: int = 1,
        seed: int = 0,
        select: Literal["best", "last"] = "best",
        batch_size: int = 1,
        prompt_format: PromptFormat = "janus",
        image_mode_think: bool = True,
        step_order: StepOrder = "joint",
        phase_steps: int | None = None,
        latent_dtype: Literal["float32", "bfloat16"] = "float32",
        image_loss_tokens: Literal["sampled", "argmax"] = "sampled",
        method: Method = "milr",
        best_of_n: int | None = None,
        best_of_n_think: Literal["greedy", "sample"] = "greedy",
        monitors: list[Reward | Callable[[list, list], Any]] | None = None,
        monitor_every_step: bool = False,
        reward_timeout: float | None = None,
        reward_retries: int = 2,
        reward_backoff: float = 1.0,
        on_reward_failure: Literal["stop", "skip"] = "stop",
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["backbone", "reward", "monitors"])
        self.options = MILROptions.of(self.hparams)  # checks every option, naming it
        self.backbone = backbone
        self.plan = Plan.of(self.options, backbone.num_image_tokens)
        self.latents = LatentSlots(self.plan, batch_size, backbone.hidden_size, LATENT_DTYPES[latent_dtype])
        self.text_latents, self.image_latents = self.latents.text, self.latents.image  # registered: the only parameters
        self.timings = Timings()  # seconds per phase of the current step
        self.scorer = Scorer(as_reward(reward), named_monitors(monitors or []), self.options.call_policy,
                             self.options.skips_failures, monitor_every_step, self.timings)
        self.reward, self.monitors = self.scorer.reward, self.scorer.monitors
        self.decoder = Decoder(backbone, self.plan, self.latents, self.options, self.timings)
        self.slots: list[PromptState | None] = [None] * batch_size
        # results wait here until a consumer takes them (``take_finished``: the runner's writer once
        # written, ``milr.optimize_stream`` once handed over), so a long run holds only the last step's
        self.finished: list[MILRResult] = []
        self.finished_count = 0  # results ever produced (progress, logs)
        self.failed: list[FailedPrompt] = []  # on_reward_failure: skip; not results, retried by a re-run
        self.scored: list[PromptState] = []  # prompts scored in the current step, for callbacks
        self._snapshots: dict[str, dict[str, Any]] = {}  # uid -> snapshot of a prompt to continue (see resume)

    @property
    def retries(self) -> int:
        """Reward calls repeated after a transient error, this run."""
        return self.scorer.retries

    # ------------------------------------------------------------------ Lightning hooks
    def setup(self, stage: str) -> None:
        root = self.trainer.strategy.root_device
        if root != self.backbone.device:  # e.g. one GPU per rank: follow Lightning's placement
            self.backbone.to(root)
        for reward in (self.reward, *self.monitors.values()):
            reward.setup(device=self.backbone.device, dtype=self.backbone.dtype, backbone=self.backbone)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        params = list(self.parameters())
        if self.hparams.optimizer == "sgd":
            return torch.optim.SGD(params, lr=self.hparams.lr)
        return torch.optim.Adam(params, lr=self.hparams.lr)

    def training_step(self, batch: PromptStream, batch_idx: int) -> torch.Tensor:
        """One MILR step of every running prompt; ``batch`` is the prompt stream free slots pull from."""
        self.timings.start_step()
        self.scored = []
        self._refill(batch)  # 1. free slots: resumed prompts, or stage 0 of new ones
        self._decode_running()  # 2. the other running prompts: candidates decoded and scored
        self._apply_stop_rules()  # 3. threshold, step budget, then callbacks
        self._log_step()
        loss = self._loss()  # 4. REINFORCE loss of the prompts still running
        if all(s is None for s in self.slots) and batch.exhausted:
            self.trainer.should_stop = True
        return loss

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        for state in self.active():
            if not all(torch.isfinite(p).all() for p in self.latents.of(state.slot)):
                self.stop_prompt(state, StopReason.NONFINITE)

    # ------------------------------------------------------------------ public API (callbacks, runner, milr.optimize)
    def active(self) -> list[PromptState]:
        """Prompts currently holding a latent slot."""
        return [s for s in self.slots if s is not None]

    def stop_prompt(self, state: PromptState, reason: StopReason | str = StopReason.CALLBACK) -> MILRResult:
        """Finish ``state``: keep its selected image, free its slot (its latents stop moving)."""
        if self.slots[state.slot] is not state:
            raise ValueError(f"prompt {state.prompt.index} is not running")
        state.stop_reason = StopReason(reason)
        chosen, step = state.selected(self.plan.select_best)
        result = state.result(chosen, step, self.plan.method)
        result.monitors = self.scorer.result_monitors(state, chosen, step)
        self.finished.append(result)
        self.finished_count += 1
        self._free(state)
        return result

    def take_finished(self) -> list[MILRResult]:
        """The results finished since the last call, handed over: the module keeps no reference,
        so a written (or returned) result's images and history can be freed."""
        taken, self.finished = self.finished, []
        return taken

    def finish_running(self) -> list[MILRResult]:
        """Finish every running prompt with ``FIT_END`` (what ``milr.optimize`` returns when a fit
        ends early, e.g. by stock ``EarlyStopping``; the runner keeps them in flight instead)."""
        return [self.stop_prompt(state, StopReason.FIT_END) for state in self.active()]

    def snapshot(self, state: PromptState) -> dict[str, Any]:
        """Everything a running prompt needs to continue in another process exactly where it is
        (``milr.slots.LatentSlots.snapshot``), taken after the update."""
        return self.latents.snapshot(state, self.trainer.optimizers[0])

    def resume(self, snapshots: Sequence[dict[str, Any]]) -> None:
        """Prompts to continue from ``snapshot`` records instead of starting them anew, when the
        stream hands them out (the runner puts them first)."""
        self._snapshots = {s["uid"]: s for s in snapshots}

    # ------------------------------------------------------------------ the steps
    def _refill(self, stream: PromptStream) -> None:
        """1. Free slots take the stream's next prompts. A resumed one continues where it was
        saved; a new one runs stage 0: think text, initial image and reward, its latents from
        their hidden states (a failed one takes no slot; one with nothing to optimise stops)."""
        free = [i for i, s in enumerate(self.slots) if s is None]
        prompts = stream.take(len(free)) if free else []
        resumed = {p.uid for p in prompts if p.uid in self._snapshots}
        for prompt, slot in zip(prompts, free):
            if prompt.uid in resumed:
                snapshot = self._snapshots.pop(prompt.uid)
                self.slots[slot] = self.latents.restore(snapshot, slot, self.trainer.optimizers[0], self.backbone.device)
        prompts, free = [p for p in prompts if p.uid not in resumed], [s for s in free if self.slots[s] is None]
        if not prompts:
            return
        drafts = self.decoder.first(prompts)
        answers = self.scorer.rewards([d.image for d in drafts], prompts)
        self._fail_skipped()
        monitored = self.scorer.monitor([d.image for d in drafts], prompts)
        for prompt, slot, draft, answer, monitors in zip(prompts, free, drafts, answers, monitored):
            if answer is None:  # failed (on_reward_failure: skip): it takes no slot
                continue
            self.latents.reset(slot, self.trainer.optimizers, draft.z_t, draft.z_v)
            state = PromptState(prompt, slot, draft.generator, draft.text, draft.image, last=draft.scored(answer),
                                started=draft.started, step_started=draft.started, decoded_images=1, initial_monitors=monitors)
            self.slots[slot] = state
            if self.plan.updates and draft.z_t is not None and len(draft.z_t) == 0:
                self._record(state, [state.last])
                self.stop_prompt(state, StopReason.EMPTY_PREFIX)
            elif not self.plan.stage0_candidates:  # else its step 0 waits for its candidates (step 2)
                self._record(state, [state.last])

    def _decode_running(self) -> None:
        """2. Decode and score ``plan.k`` candidates of every running prompt without fresh samples:
        first the prompts just admitted under rloo (no step recorded yet: their stage-0 image
        counts for selection, the candidates are the first update's), then every prompt whose
        latents moved. Then the monitors of the step, with ``monitor_every_step``."""
        waiting = [s for s in self.active() if not s.fresh]
        k = self.plan.k
        for states in ([s for s in waiting if not s.history], [s for s in waiting if s.history]):
            if not states:
                continue
            drafts = self.decoder.candidates(states)
            answers = self.scorer.rewards([d.image for d in drafts], [s.prompt for s in states for _ in range(k)])
            self._fail_skipped()
            for i, state in enumerate(states):
                if answers[i * k] is None:  # failed: all rows of a prompt fail together, and it left
                    continue
                samples = [d.scored(a) for d, a in zip(drafts[i * k : (i + 1) * k], answers[i * k : (i + 1) * k])]
                self._record(state, samples if state.history else [state.last, *samples], update=samples)
        self.scorer.monitor_steps(self.scored)

    def _apply_stop_rules(self) -> None:
        """3. Each prompt scored this step stops over its threshold or at its step budget; else
        every callback's ``on_prompt_scored`` may stop it."""
        threshold = self.hparams.reward_threshold
        for state in list(self.scored):
            if state.stop_reason is not None:
                continue
            if threshold is not None and state.reward > threshold:
                self.stop_prompt(state, StopReason.THRESHOLD)
            elif state.step >= self.plan.step_budget:
                self.stop_prompt(state, StopReason.MAX_STEPS)
            else:
                for callback in self.trainer.callbacks:
                    hook = getattr(callback, "on_prompt_scored", None)
                    if callable(hook) and state.stop_reason is None:
                        hook(self.trainer, self, state)

    def _loss(self) -> torch.Tensor:
        """4. Sum over running prompts of their REINFORCE loss (a sum, so each prompt's gradient
        is the same whatever else is in the batch); the plan says whether any latents move and
        towards which reward (``anti_reward``: 1 − R)."""
        with self.timings.phase("update"):
            terms = []
            for state in self.active():
                state.fresh = False
                if not self.plan.updates:
                    continue
                rewards = self.plan.optimised_reward(torch.tensor([s.reward for s in state.samples]))
                loss = reinforce_loss(self.decoder.log_probs(state), rewards, self.plan.estimator)
                if not torch.isfinite(loss):
                    self.stop_prompt(state, StopReason.NONFINITE)
                    continue
                terms.append(loss)
            if not terms:  # nothing to update this step; a graph-less zero keeps every gradient None
                return torch.zeros((), device=self.device, requires_grad=True)
            return torch.stack(terms).sum()

    # ------------------------------------------------------------------ bookkeeping
    def _record(self, state: PromptState, samples: list[Sample], update: list[Sample] | None = None) -> None:
        state.record(samples, update)
        self.scored.append(state)

    def _free(self, state: PromptState) -> None:
        """Give up ``state``'s slot: its latents, optimiser state and cached prompt rows."""
        self.slots[state.slot] = None
        self.latents.reset(state.slot, self.trainer.optimizers if self._trainer is not None else [])
        self.decoder.release(state.prompt)

    def _fail_skipped(self) -> None:
        """``on_reward_failure: skip``: the prompts of a failed reward call leave the batch as
        failed; a running one frees its slot like a stopped one, but nothing of it is a result."""
        for prompt, reason in self.scorer.take_failures():
            state = next((s for s in self.active() if s.prompt is prompt), None)
            step = 0 if state is None else state.step + 1
            if state is not None:
                state.stop_reason = StopReason.FAILED
                self._free(state)
            self.failed.append(FailedPrompt(prompt, reason, step))
            logger.warning("prompt %s failed at step %d (%s); on_reward_failure is 'skip': the run carries on, "
                           "a re-run retries it", prompt.uid, step, reason)

    def _log_step(self) -> None:
        """The step's reward statistics, finished prompts, monitor means and reward retries."""
        if self.scored:
            rewards, n = torch.tensor([s.reward for s in self.scored]), len(self.scored)
            for stat in ("mean", "min", "max"):
                self.log(f"reward/{stat}", getattr(rewards, stat)(), on_step=False, on_epoch=True, batch_size=n)
            self.log("prompts/finished", float(self.finished_count), on_step=False, on_epoch=True, batch_size=n)
            for name, (value, size) in self.scorer.monitor_logs(self.scored, self.finished_count).items():
                self.log(name, value, on_step=False, on_epoch=True, batch_size=size)
        self.log("reward/retries", float(self.retries), on_step=False, on_epoch=True, batch_size=1)
