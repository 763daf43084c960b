"""``MILRModule``: the latent prefixes of the prompts being optimised, as a LightningModule.

One Lightning epoch is one MILR step for every prompt in the batch, so the stock loop,
precision plugins, loggers and callbacks (``EarlyStopping`` included) drive the method:

1. free latent slots are refilled from the prompt stream (the batch): think text, initial
   image and reward of each new prompt (stage 0; it is that prompt's step 0; with ``rloo`` also
   K candidates decoded from the fresh latents);
2. every other running prompt is decoded from its current latents and scored;
3. stop rules run: the threshold and step budget given here, then any callback that defines
   ``on_prompt_scored(trainer, pl_module, state)`` and calls ``pl_module.stop_prompt``;
4. ``training_step`` returns the REINFORCE loss of the prompts still running over the latents
   the step order (``milr.schedule``) names for this step; Lightning's optimiser moves them. A stopped prompt's latents get no gradient (``None``), so
   Adam's momentum cannot move them either.

``method`` (``milr.methods``) swaps in the baselines at the same cost: ``base`` stops after
stage 0, ``best_of_n`` decodes each later step's image afresh from the stage-0 image prompt
(no latents, no update), ``anti_reward`` updates towards 1 − R. ``monitors`` are extra rewards that
score the initial and the selected image (and each step's, with ``monitor_every_step``): logged
and reported, never in the loss.
Every reward call goes through ``rewards.base.score`` under the ``reward_*`` options (timeout,
retries of transient errors); a call that still fails stops the run or, with
``on_reward_failure: skip``, fails the prompts it scored (``failed``) while the others carry on.

The frozen backbone is a plain attribute, not a submodule: ``parameters()`` and
``state_dict()`` hold only the latents.
"""

from __future__ import annotations

import copy
import logging
import time
from typing import Any, Callable, Literal, Sequence

import torch
from lightning import LightningModule
from torch import nn

from data.prompt import Prompt
from milr.backbone import ImageContext, JanusBackbone
from milr.methods import UPDATING, Method, optimised_reward, step_budget
from milr.objective import Estimator, prefix_length, reinforce_loss, token_log_prob
from milr.prompt_cache import PromptCache, PromptKV
from milr.options import LATENT_DTYPES, MILROptions, Mode
from milr.prompts import PromptFormat, image_prompt, think_prompt, think_text
from milr.schedule import StepOrder
from milr.state import FailedPrompt, MILRResult, PromptState, Sample, StepRecord, StopReason
from rewards.base import Reward, RewardOutput, TransientRewardError, as_reward, reward_name, score

logger = logging.getLogger(__name__)
Answer = tuple[float, dict[str, Any]]  # one row's reward and details


#: Trainer settings MILR needs: one step per epoch, nothing to validate, no weight checkpoints.
TRAINER_DEFAULTS: dict[str, Any] = {
    "max_epochs": -1,
    "limit_train_batches": 1,
    "num_sanity_val_steps": 0,
    "enable_checkpointing": False,
    "enable_model_summary": False,
    "log_every_n_steps": 1,
}


def prompt_seed(seed: int, index: int, repeat: int = 0) -> int:
    """Each prompt's (and repeat's) own seed: results do not depend on run order or batch composition."""
    return (seed * 1_000_003 + index + repeat * 1_000_000_007) % (2**62)


def named_monitors(monitors: Sequence[Reward | Callable[[list, list], Any]]) -> dict[str, Reward]:
    """Monitors by name (the reward's ``name``; a repeated name gets ``_2``, ``_3``, ...)."""
    named: dict[str, Reward] = {}
    for monitor in map(as_reward, monitors):
        base = getattr(monitor, "name", type(monitor).__name__)
        name, n = base, 1
        while name in named:
            n += 1
            name = f"{base}_{n}"
        named[name] = monitor
    return named


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
        self.reward = as_reward(reward)
        self.monitors = named_monitors(monitors or [])
        self.updates = method in UPDATING
        self.step_budget = step_budget(method, max_steps, estimator, samples_per_step, best_of_n)
        self.call_policy = self.options.call_policy
        self.uses_text = mode in ("text", "both")
        self.uses_image = mode in ("image", "both")
        self.think_in_image = mode != "image" or image_mode_think  # the image prompt carries the think text
        self.schedule = self.options.schedule()
        self.latent_dtype = LATENT_DTYPES[latent_dtype]
        self.image_prefix_len = prefix_length(image_ratio, backbone.num_image_tokens) if self.uses_image else 0
        if self.uses_image and self.image_prefix_len == 0:
            raise ValueError(
                f"image_ratio={image_ratio} × {backbone.num_image_tokens} image tokens floors to 0 latent "
                "tokens: nothing to optimise. Raise image_ratio or use mode='text'."
            )
        d = backbone.hidden_size
        self.text_latents = nn.ParameterList(
            [nn.Parameter(torch.zeros(0, d, dtype=self.latent_dtype)) for _ in range(batch_size)] if self.uses_text else []
        )
        self.image_latents = nn.ParameterList(
            [nn.Parameter(torch.zeros(0, 2, d, dtype=self.latent_dtype)) for _ in range(batch_size)] if self.uses_image else []
        )
        self.slots: list[PromptState | None] = [None] * batch_size
        # results wait here until a consumer takes them (``take_finished``: the runner's writer once
        # written, ``milr.optimize_stream`` once handed over), so a long run holds only the last step's
        self.finished: list[MILRResult] = []
        self.finished_count = 0  # results ever produced (progress, logs)
        self._monitor_sums: dict[tuple[str, str], float] = {}  # (monitor, initial/selected) -> sum over results
        self.failed: list[FailedPrompt] = []  # on_reward_failure: skip; not results, retried by a re-run
        self.retries = 0  # reward calls repeated after a transient error, this run
        self.scored: list[PromptState] = []  # prompts scored in the current step, for callbacks
        self.timings: dict[str, float] = {}  # seconds per phase of the current step
        self._snapshots: dict[str, dict[str, Any]] = {}  # uid -> snapshot of a prompt to continue (see resume)
        # each prompt's prefilled think and image prompts, kept across steps per uid (milr.prompt_cache);
        # a restored prompt has none: its rows are prefilled when it is first decoded
        self._think_prompts = PromptCache(backbone.think_rows, "rows" if backbone.reuse_prompts else "never")
        self._image_prompts = PromptCache(backbone.image_rows, "rows" if backbone.reuse_prompts else "batch")

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

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        """``batch`` is the prompt stream (``data.PromptStream``): free slots pull from it."""
        self.timings = {"decode": 0.0, "think": 0.0, "reward": 0.0}  # think is part of decode
        self.scored = []
        free = [i for i, s in enumerate(self.slots) if s is None]
        if free:
            self._admit(batch.take(len(free)), free)
        stale = [s for s in self.slots if s is not None and not s.fresh]
        if stale:
            self._decode(stale)
        if self.monitors and self.hparams.monitor_every_step:
            self._monitor_steps(self.scored)
        for state in list(self.scored):
            self._apply_stop_rules(state)
        self._log_rewards()
        self.log("reward/retries", float(self.retries), on_step=False, on_epoch=True, batch_size=1)
        start = time.perf_counter()
        loss = self._loss()
        self.timings["update"] = time.perf_counter() - start
        if all(s is None for s in self.slots) and batch.exhausted:
            self.trainer.should_stop = True
        return loss

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        for state in self.active():
            if not all(torch.isfinite(p).all() for p in self._latents(state.slot)):
                self.stop_prompt(state, StopReason.NONFINITE)

    def finish_running(self) -> list[MILRResult]:
        """Finish every running prompt with ``FIT_END`` (what ``milr.optimize`` returns when a fit
        ends early, e.g. by stock ``EarlyStopping``; the runner keeps them in flight instead)."""
        return [self.stop_prompt(state, StopReason.FIT_END) for state in self.active()]

    # ------------------------------------------------------------------ in-flight prompts across runs
    def snapshot(self, state: PromptState) -> dict[str, Any]:
        """Everything a running prompt needs to continue in another process exactly where it is:
        its bookkeeping, generator state, latents and optimiser state (taken after the update)."""
        optimizer = self.trainer.optimizers[0]
        params = self._latents(state.slot)
        saved = copy.copy(state)
        saved.generator = None
        return {
            "uid": state.prompt.uid,
            "sha": state.prompt.sha,
            "state": saved,
            "generator": state.generator.get_state(),
            "elapsed": (time.perf_counter() - state.started, time.perf_counter() - state.step_started),
            "latents": [p.detach().cpu().clone() for p in params],
            "optimizer": [{k: (v.detach().cpu().clone() if torch.is_tensor(v) else v) for k, v in optimizer.state.get(p, {}).items()} for p in params],
        }

    def resume(self, snapshots: Sequence[dict[str, Any]]) -> None:
        """Prompts to continue from ``snapshot`` records instead of starting them anew, when the
        stream hands them out (the runner puts them first)."""
        self._snapshots = {s["uid"]: s for s in snapshots}

    def _restore(self, snapshot: dict[str, Any], slot: int) -> PromptState:
        state: PromptState = copy.copy(snapshot["state"])
        state.slot = slot
        state.generator = torch.Generator(device=self.backbone.device)
        state.generator.set_state(snapshot["generator"])
        now = time.perf_counter()
        state.started, state.step_started = now - snapshot["elapsed"][0], now - snapshot["elapsed"][1]
        params = self._latents(slot)
        if len(params) != len(snapshot["latents"]):
            raise ValueError(f"prompt {state.prompt.uid}: its saved latents do not fit mode={self.hparams.mode!r}")
        optimizer = self.trainer.optimizers[0]
        for param, value, opt_state in zip(params, snapshot["latents"], snapshot["optimizer"]):
            param.data = value.to(device=self.device, dtype=self.latent_dtype).clone()
            param.grad = None
            optimizer.state.pop(param, None)
            if opt_state:
                optimizer.state[param] = {k: (v.to(self.device) if torch.is_tensor(v) and v.dim() else v) for k, v in opt_state.items()}
        self.slots[slot] = state
        return state

    # ------------------------------------------------------------------ public API for callbacks
    def active(self) -> list[PromptState]:
        """Prompts currently holding a latent slot."""
        return [s for s in self.slots if s is not None]

    def stop_prompt(self, state: PromptState, reason: StopReason | str = StopReason.CALLBACK) -> MILRResult:
        """Finish ``state``: keep its selected image, free its slot (its latents stop moving)."""
        if self.slots[state.slot] is not state:
            raise ValueError(f"prompt {state.prompt.index} is not running")
        state.stop_reason = StopReason(reason)
        chosen = state.best if self.hparams.select == "best" else state.last
        assert chosen is not None and state.best is not None
        step = state.best_step if self.hparams.select == "best" else state.step
        result = MILRResult(
            prompt=state.prompt,
            image=chosen.image,
            text=chosen.text,
            rewards=state.rewards,
            final_reward=state.reward,
            selected_reward=chosen.reward,
            best_reward=state.best.reward,
            steps=state.step,
            stop_reason=state.stop_reason,
            initial_image=state.initial_image,
            history=state.history,
            seconds=time.perf_counter() - state.started,
            method=self.hparams.method,
            initial_text=state.think_text,
            selected_step=step,
            reward_calls=state.reward_calls,
            decoded_images=state.decoded_images,
            monitors=self._result_monitors(state, chosen, step),
        )
        self.finished.append(result)
        self.finished_count += 1
        for name, scores in result.monitors.items():
            for when, value in scores.items():
                self._monitor_sums[name, when] = self._monitor_sums.get((name, when), 0.0) + value
        self._free(state)
        return result

    def take_finished(self) -> list[MILRResult]:
        """The results finished since the last call, handed over: the module keeps no reference,
        so a written (or returned) result's images and history can be freed."""
        taken, self.finished = self.finished, []
        return taken

    def _free(self, state: PromptState) -> None:
        """Give up ``state``'s slot: its latents, optimiser state and cached prompt rows."""
        self.slots[state.slot] = None
        self._reset_latents(state.slot)
        self._think_prompts.release(state.prompt.uid)
        self._image_prompts.release(state.prompt.uid)

    def _fail(self, prompts: list[Prompt], err: Exception) -> None:
        """``on_reward_failure: skip``: the prompts of a failed reward call leave the batch as
        failed; a running one frees its slot like a stopped one, but nothing of it is a result."""
        reason = f"reward {reward_name(self.reward)!r}: {type(err).__name__}: {err}"
        for prompt in {id(p): p for p in prompts}.values():  # a prompt's K rows: one failure
            state = next((s for s in self.active() if s.prompt is prompt), None)
            step = 0 if state is None else state.step + 1
            if state is not None:
                state.stop_reason = StopReason.FAILED
                self._free(state)
            self.failed.append(FailedPrompt(prompt, reason, step))
            logger.warning("prompt %s failed at step %d (%s); on_reward_failure is 'skip': the run carries on, "
                           "a re-run retries it", prompt.uid, step, reason)

    # ------------------------------------------------------------------ latents
    def _latents(self, slot: int) -> list[nn.Parameter]:
        return ([self.text_latents[slot]] if self.uses_text else []) + ([self.image_latents[slot]] if self.uses_image else [])

    def _reset_latents(self, slot: int, text: torch.Tensor | None = None, image: torch.Tensor | None = None) -> None:
        """Give ``slot`` new latent values (empty when freed) and fresh optimiser state."""
        d = self.backbone.hidden_size
        new = []
        if self.uses_text:
            new.append((self.text_latents[slot], torch.zeros(0, d) if text is None else text))
        if self.uses_image:
            new.append((self.image_latents[slot], torch.zeros(0, 2, d) if image is None else image))
        optimizers = self.trainer.optimizers if self._trainer is not None else []
        for param, value in new:
            param.data = value.detach().to(device=self.device, dtype=self.latent_dtype).clone()
            param.grad = None
            for opt in optimizers:
                opt.state.pop(param, None)

    # ------------------------------------------------------------------ decoding
    def _generator(self, prompt: Prompt) -> torch.Generator:
        seed = prompt_seed(self.hparams.seed, prompt.index, prompt.repeat)
        return torch.Generator(device=self.backbone.device).manual_seed(seed)

    def _score(self, images: list, prompts: list[Prompt]) -> list[Answer | None]:
        """Each row's ``(reward, details)``, scored under the call policy. A call that still fails
        stops the run (``on_reward_failure: stop``) or fails its prompts (``skip``: their rows are
        ``None``)."""
        start = time.perf_counter()
        try:
            return self._answers(images, prompts)
        except Exception as err:  # keep the reward's own exception, add where it happened
            if self.hparams.on_reward_failure == "skip":
                return self._skip(err, images, prompts)
            err.add_note(
                f"reward {reward_name(self.reward)!r} failed on prompts {[p.index for p in prompts]}. Finished "
                "prompts are already written; re-running the same command resumes with the unfinished ones "
                "(model.on_reward_failure: skip marks such prompts failed and carries on)."
            )
            raise
        finally:
            self.timings["reward"] += time.perf_counter() - start

    def _skip(self, err: Exception, images: list, prompts: list[Prompt]) -> list[Answer | None]:
        """After a failed call under ``skip``: a non-transient failure of a call holding several
        prompts asks again once per prompt, so only the prompts that fail are failed; a transient
        one (an outage, a timeout) fails them all, as asking each alone would only repeat the wait."""
        rows_of: dict[int, list[int]] = {}
        for row, prompt in enumerate(prompts):
            rows_of.setdefault(id(prompt), []).append(row)
        answers: list[Answer | None] = [None] * len(prompts)
        if isinstance(err, TransientRewardError) or len(rows_of) == 1:
            self._fail(prompts, err)
            return answers
        for rows in rows_of.values():
            try:
                for row, answer in zip(rows, self._answers([images[r] for r in rows], [prompts[r] for r in rows])):
                    answers[row] = answer
            except Exception as one:
                self._fail([prompts[rows[0]]], one)
        return answers

    def _answers(self, images: list, prompts: list[Prompt]) -> list[Answer]:
        out = score(self.reward, images, prompts, self.call_policy, on_retry=self._count_retry)
        return list(zip(out.scores.tolist(), out.details))

    def _count_retry(self, *_: Any) -> None:
        self.retries += 1

    def _monitor_score(self, images: list, prompts: list[Prompt], name: str) -> RewardOutput:
        """Score with the monitor ``name``, under the same call policy; a monitor that still fails
        ends the run whatever ``on_reward_failure`` says (it is no prompt's reward)."""
        start = time.perf_counter()
        try:
            return score(self.monitors[name], images, prompts, self.call_policy, on_retry=self._count_retry)
        except Exception as err:
            err.add_note(
                f"monitor {name!r} failed on prompts {[p.index for p in prompts]}. Finished prompts are already "
                "written; re-running the same command resumes with the unfinished ones."
            )
            raise
        finally:
            self.timings["monitor"] = self.timings.get("monitor", 0.0) + time.perf_counter() - start

    def _monitor(self, images: list, prompts: list[Prompt]) -> list[dict[str, float]]:
        """Each monitor's score of each image: held-out judges, logged and reported, never in the loss."""
        per_image: list[dict[str, float]] = [{} for _ in images]
        for name in self.monitors:
            for scores, value in zip(per_image, self._monitor_score(images, prompts, name).scores.tolist()):
                scores[name] = value
        return per_image

    def _monitor_steps(self, states: list[PromptState]) -> None:
        """``monitor_every_step``: score each state's latest step's best image (stage 0's plain one is already scored)."""
        todo = []
        for state in states:
            if state.last.image is state.initial_image:
                state.history[-1].monitors = dict(state.initial_monitors)
            else:
                todo.append(state)
        if todo:
            for state, scores in zip(todo, self._monitor([s.last.image for s in todo], [s.prompt for s in todo])):
                state.history[-1].monitors = scores

    def _result_monitors(self, state: PromptState, chosen: Sample, step: int) -> dict[str, dict[str, float]]:
        """``{name: {"initial", "selected"}}``: scores already taken are reused, else the selected image is scored now."""
        if not self.monitors:
            return {}
        if chosen.image is state.initial_image:
            selected = state.initial_monitors
        elif state.history[step].monitors:  # monitor_every_step scored the step's best image, which is ``chosen``
            selected = state.history[step].monitors
        else:
            selected = self._monitor([chosen.image], [state.prompt])[0]
        return {name: {"initial": state.initial_monitors[name], "selected": selected[name]} for name in self.monitors}

    def _image_context(self, prompts: Sequence[Prompt], chat: list[str]) -> ImageContext:
        """Prefilled [cond; uncond] rows of the image prompts ``chat`` (built by ``_image_prompt``);
        a row is prefilled only when its prompt is new or its image prompt changed (its think text,
        or stage 0's prompt against the re-generation one; mode ``image`` keeps it: prefilled once)."""
        return self.backbone.image_context(chat, self._image_prompts.rows([p.uid for p in prompts], chat))

    def _think_rows(self, prompts: Sequence[Prompt]) -> list[PromptKV]:
        """Each prompt's prefilled think prompt (in ``prompt_format``), prefilled once per prompt."""
        fmt = self.hparams.prompt_format
        return self._think_prompts.rows([p.uid for p in prompts], [think_prompt(p.text, fmt) for p in prompts])

    def _image_prompt(self, prompt: Prompt, think: str, regeneration: bool) -> str:
        """The chat-formatted image prompt of one row (``regeneration``: a step after stage 0)."""
        fmt = self.hparams.prompt_format
        text_mode = regeneration and not self.uses_image  # the authors' text-mode re-generation
        return image_prompt(prompt.text, think if self.think_in_image else None, fmt, text_regeneration=text_mode)

    def _think(self, prompts: Sequence[Prompt], prefixes: list[torch.Tensor] | None = None, record_hidden: bool = False):
        start = time.perf_counter()
        rows = self._think_rows(prompts) if self.uses_text else None  # mode image thinks once, at admission: nothing to keep
        out = self.backbone.think(
            [p.text for p in prompts], prefixes, record_hidden=record_hidden, prompt_format=self.hparams.prompt_format, prompt_rows=rows
        )
        out.texts = [think_text(t, self.hparams.prompt_format) for t in out.texts]
        self.timings["think"] += time.perf_counter() - start
        return out

    def _admit(self, prompts: Sequence[Prompt], free: list[int]) -> None:
        """Stage 0 for new prompts: think text, initial image, reward; latents from their hidden
        states. With ``rloo`` the new prompts also decode ``samples_per_step`` candidates from
        those latents, so the first update already has its leave-one-out baseline."""
        restored = [(p, slot) for p, slot in zip(prompts, free) if p.uid in self._snapshots]
        for prompt, slot in restored:
            self._restore(self._snapshots.pop(prompt.uid), slot)
        prompts, free = [p for p in prompts if p.uid not in {r.uid for r, _ in restored}], [s for s in free if self.slots[s] is None]
        if not prompts:
            return
        bb = self.backbone
        start = time.perf_counter()
        if self.uses_text or self.think_in_image:
            think = self._think(prompts, record_hidden=self.uses_text)
            texts = think.texts
        else:  # the authors' image mode: no think text at all
            think, texts = None, [""] * len(prompts)
        generators = [self._generator(p) for p in prompts]
        context = self._image_context(prompts, [self._image_prompt(p, t, regeneration=False) for p, t in zip(prompts, texts)])
        sample = bb.sample_image(context, generators, record_hidden=self.image_prefix_len)
        images = bb.decode_images(sample.tokens)
        self.timings["decode"] += time.perf_counter() - start
        answers = self._score(images, list(prompts))
        monitored = self._monitor(images, list(prompts))
        admitted = []
        for j, (prompt, slot) in enumerate(zip(prompts, free)):
            if answers[j] is None:  # failed (on_reward_failure: skip): it takes no slot
                continue
            z_t = think.hidden[j][: prefix_length(self.hparams.text_ratio, len(think.hidden[j]))] if self.uses_text else None
            z_v = sample.hidden[j] if self.uses_image else None
            self._reset_latents(slot, z_t, z_v)
            text_prefix = bb.text_logits(z_t).argmax(-1).cpu() if z_t is not None else torch.zeros(0, dtype=torch.long)
            image_prefix = sample.tokens[j, : self.image_prefix_len].cpu()
            first = Sample(text_prefix, image_prefix, texts[j], images[j], *answers[j])
            state = PromptState(prompt, slot, generators[j], texts[j], images[j], last=first, started=start, step_started=start,
                                decoded_images=1, initial_monitors=monitored[j])
            self.slots[slot] = state
            if self.updates and z_t is not None and len(z_t) == 0:
                self._record(state, [first])
                self.stop_prompt(state, StopReason.EMPTY_PREFIX)
            else:
                admitted.append(state)
        if self.hparams.estimator != "rloo" or not self.updates:
            for state in admitted:
                self._record(state, [state.last])
            return
        for state, samples in self._candidates(admitted):
            self._record(state, [state.last, *samples], update=samples)

    def _decode(self, states: list[PromptState]) -> None:
        resample = self.hparams.method == "best_of_n"
        for state, samples in self._candidates(states, from_latents=not resample):
            self._record(state, samples)

    def _candidates(self, states: list[PromptState], from_latents: bool = True) -> list[tuple[PromptState, list[Sample]]]:
        """Decode and score ``samples_per_step`` candidates per prompt from its current latents,
        or (best-of-N) one fresh image per prompt from its stage-0 image prompt, no forced prefix.
        A prompt whose reward failed (``on_reward_failure: skip``) has left and is not listed."""
        bb, k = self.backbone, self.hparams.samples_per_step if from_latents else 1
        start = time.perf_counter()
        rows = [s for s in states for _ in range(k)]
        for s in rows:
            s.decoded_images += 1
        gens = [s.generator for s in rows]
        if from_latents:
            text_prefixes = [self._text_prefix(s) for s in rows]
            texts = self._think_texts(rows, text_prefixes)
        else:
            text_prefixes, texts = [torch.zeros(0, dtype=torch.long)] * len(rows), [s.think_text for s in rows]
        chat = [self._image_prompt(s.prompt, t, regeneration=from_latents) for s, t in zip(rows, texts)]
        context = self._image_context([s.prompt for s in rows], chat)
        if self.uses_image and from_latents:
            z = torch.stack([self.image_latents[s.slot] for s in rows])
            image_prefixes = bb.sample_prefix(z.to(bb.device), gens)
        else:
            image_prefixes = None
        sample = bb.sample_image(context, gens, image_prefixes)
        images = bb.decode_images(sample.tokens)
        self.timings["decode"] += time.perf_counter() - start
        answers = self._score(images, [s.prompt for s in rows])
        out = []
        for i, state in enumerate(states):
            if answers[i * k] is None:  # failed: all rows of a prompt fail together
                continue
            samples = []
            for r in range(i * k, (i + 1) * k):
                prefix = image_prefixes[r].cpu() if image_prefixes is not None else torch.zeros(0, dtype=torch.long)
                samples.append(Sample(text_prefixes[r], prefix, texts[r], images[r], *answers[r]))
            out.append((state, samples))
        return out

    def _text_prefix(self, state: PromptState) -> torch.Tensor:
        """Text prefix tokens from the text latents: argmax (reference) or a sample (rloo)."""
        if not self.uses_text:
            return torch.zeros(0, dtype=torch.long)
        with torch.no_grad():
            logits = self.backbone.text_logits(self.text_latents[state.slot].detach())
        if self.hparams.estimator == "reference":
            return logits.argmax(-1).cpu()
        probs = torch.softmax(logits, -1)
        return torch.multinomial(probs, 1, generator=state.generator)[:, 0].cpu()

    def _think_texts(self, rows: list[PromptState], prefixes: list[torch.Tensor]) -> list[str]:
        """Think text per row: the stage-0 text when text is not optimised, else the greedy
        continuation of each distinct prefix (decoded once, and not again while it is unchanged)."""
        if not self.uses_text:
            return [s.think_text for s in rows]
        keys = [(s.prompt.index, tuple(p.tolist())) for s, p in zip(rows, prefixes)]
        known = {(s.prompt.index, tuple(s.last.text_prefix.tolist())): s.last.text for s in rows}
        todo = list(dict.fromkeys(k for k in keys if k not in known))
        if todo:
            by_key = {k: (s, p) for k, s, p in zip(keys, rows, prefixes)}
            out = self._think([by_key[k][0].prompt for k in todo], [by_key[k][1] for k in todo])
            known.update(zip(todo, out.texts))
        return [known[k] for k in keys]

    def _record(self, state: PromptState, samples: list[Sample], update: list[Sample] | None = None) -> None:
        """Log one step: every scored sample counts for stopping and selection (the best), the
        ``update`` samples (default: all) are the ones the next loss uses."""
        update = samples if update is None else update
        chosen = max(samples, key=lambda s: s.reward)
        now = time.perf_counter()
        mean = sum(s.reward for s in update) / len(update)
        rewards = [s.reward for s in samples]
        state.reward_calls += len(samples)
        state.history.append(
            StepRecord(len(state.history), chosen.reward, chosen.text, now - state.step_started, mean, chosen.details, rewards, state.reward_calls)
        )
        state.step_started = now
        state.samples, state.fresh = update, True
        state.last = chosen
        if state.best is None or chosen.reward > state.best.reward:
            state.best, state.best_step = chosen, state.step
        self.scored.append(state)

    # ------------------------------------------------------------------ stopping, logging, loss
    def _apply_stop_rules(self, state: PromptState) -> None:
        threshold = self.hparams.reward_threshold
        if state.stop_reason is not None:
            return
        if threshold is not None and state.reward > threshold:
            self.stop_prompt(state, StopReason.THRESHOLD)
        elif state.step >= self.step_budget:
            self.stop_prompt(state, StopReason.MAX_STEPS)
        else:
            for callback in self.trainer.callbacks:
                hook = getattr(callback, "on_prompt_scored", None)
                if callable(hook) and state.stop_reason is None:
                    hook(self.trainer, self, state)

    def _log_rewards(self) -> None:
        if not self.scored:
            return
        rewards = torch.tensor([s.reward for s in self.scored])
        n = len(self.scored)
        self.log("reward/mean", rewards.mean(), on_step=False, on_epoch=True, batch_size=n)
        self.log("reward/min", rewards.min(), on_step=False, on_epoch=True, batch_size=n)
        self.log("reward/max", rewards.max(), on_step=False, on_epoch=True, batch_size=n)
        self.log("prompts/finished", float(self.finished_count), on_step=False, on_epoch=True, batch_size=n)
        for name in self.monitors:
            stepped = [s.history[-1].monitors[name] for s in self.scored if s.history[-1].monitors]
            if stepped:
                self.log(f"monitor/{name}/step", sum(stepped) / len(stepped), on_step=False, on_epoch=True, batch_size=len(stepped))
            for when in ("initial", "selected") if self.finished_count else ():  # means over the prompts finished so far
                mean = self._monitor_sums[name, when] / self.finished_count
                self.log(f"monitor/{name}/{when}", mean, on_step=False, on_epoch=True, batch_size=self.finished_count)

    def _loss(self) -> torch.Tensor:
        """Sum over running prompts of their REINFORCE loss (a sum, so each prompt's gradient
        is the same whatever else is in the batch). The schedule says which latents move; the
        method, whether any move and towards which reward (``anti_reward``: 1 − R)."""
        terms = []
        for state in self.active():
            samples, state.fresh = state.samples, False
            if not self.updates:
                continue
            groups = self.schedule.groups(state.step)
            log_probs = torch.zeros(len(samples), device=self.device)
            if "text" in groups:
                log_probs = log_probs + self._text_log_probs(state.slot, samples)
            if "image" in groups:
                log_probs = log_probs + self._image_log_probs(state.slot, samples)
            rewards = optimised_reward(self.hparams.method, torch.tensor([s.reward for s in samples]))
            loss = reinforce_loss(log_probs, rewards, self.hparams.estimator)
            if not torch.isfinite(loss):
                self.stop_prompt(state, StopReason.NONFINITE)
                continue
            terms.append(loss)
        if not terms:  # nothing to update this step; a graph-less zero keeps every gradient None
            return torch.zeros((), device=self.device, requires_grad=True)
        return torch.stack(terms).sum()

    def _text_log_probs(self, slot: int, samples: list[Sample]) -> torch.Tensor:
        """``log softmax(lm_head(z_t))`` of each sample's text prefix, summed over positions → ``[K]``."""
        logits = self.backbone.text_logits(self.text_latents[slot])
        return torch.stack([token_log_prob(logits, s.text_prefix.to(logits.device)) for s in samples])

    def _image_log_probs(self, slot: int, samples: list[Sample]) -> torch.Tensor:
        """``log softmax((u + w(c − u)) / T)`` of each sample's image prefix (or of the latents'
        argmax tokens, ``image_loss_tokens='argmax'``), summed over positions → ``[K]``."""
        logits = self.backbone.image_logits(self.image_latents[slot])
        if self.hparams.image_loss_tokens == "argmax":
            tokens = [logits.detach().argmax(-1)] * len(samples)
        else:
            tokens = [s.image_prefix.to(logits.device) for s in samples]
        return torch.stack([token_log_prob(logits, t) for t in tokens])
