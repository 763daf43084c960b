"""Scoring: the reward and the monitors, every call under the reward call policy.

Every call goes through ``rewards.base.score`` (timeout, retries of transient errors, counted in
``retries``). A reward call that still fails stops the run, or with ``on_reward_failure: skip``
fails only the prompts it scored: their rows come back ``None`` and ``take_failures`` names them,
so the module can free their slots. Monitors are held-out judges of the initial and the selected
image (and of each step's best with ``monitor_every_step``): logged and reported, never in the
loss; no prompt's reward, so a monitor that still fails ends the run whatever
``on_reward_failure`` says. Nothing here knows Lightning or the module.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

from data.prompt import Prompt
from milr.state import Answer, PromptState, Sample
from milr.timings import Timings
from rewards.base import CallPolicy, Reward, TransientRewardError, as_reward, reward_name, score

RESUME_NOTE = "Finished prompts are already written; re-running the same command resumes with the unfinished ones"


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


class Scorer:
    """The run's reward and monitors with the policy every call of theirs goes through."""

    def __init__(
        self, reward: Reward, monitors: dict[str, Reward], policy: CallPolicy, skip_failures: bool, every_step: bool, timings: Timings
    ) -> None:
        self.reward, self.monitors, self.policy, self.timings = reward, monitors, policy, timings
        self.skip_failures = skip_failures  # on_reward_failure: skip
        self.every_step = every_step  # monitor_every_step
        self.retries = 0  # reward and monitor calls repeated after a transient error, this run
        self._failures: list[tuple[Prompt, str]] = []  # (prompt, reason) of failed reward calls, until taken
        self._sums: dict[tuple[str, str], float] = {}  # (monitor, initial/selected) -> sum over results

    # ------------------------------------------------------------------ the reward
    def rewards(self, images: list, prompts: list[Prompt]) -> list[Answer | None]:
        """Each row's ``(reward, details)``. A call that still fails stops the run (``stop``) or
        fails its prompts (``skip``: their rows are ``None``, ``take_failures`` names them)."""
        with self.timings.phase("reward"):
            try:
                return self._ask(images, prompts)
            except Exception as err:  # keep the reward's own exception, add where it happened
                if self.skip_failures:
                    return self._ask_each(err, images, prompts)
                err.add_note(
                    f"reward {reward_name(self.reward)!r} failed on prompts {[p.index for p in prompts]}. {RESUME_NOTE} "
                    "(model.on_reward_failure: skip marks such prompts failed and carries on)."
                )
                raise

    def take_failures(self) -> list[tuple[Prompt, str]]:
        """The prompts whose reward failed under ``skip`` since the last call, with the reason."""
        taken, self._failures = self._failures, []
        return taken

    def _ask_each(self, err: Exception, images: list, prompts: list[Prompt]) -> list[Answer | None]:
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
                for row, answer in zip(rows, self._ask([images[r] for r in rows], [prompts[r] for r in rows])):
                    answers[row] = answer
            except Exception as one:
                self._fail([prompts[rows[0]]], one)
        return answers

    def _ask(self, images: list, prompts: list[Prompt]) -> list[Answer]:
        out = score(self.reward, images, prompts, self.policy, on_retry=self._count_retry)
        return list(zip(out.scores.tolist(), out.details))

    def _fail(self, prompts: list[Prompt], err: Exception) -> None:
        reason = f"reward {reward_name(self.reward)!r}: {type(err).__name__}: {err}"
        self._failures += [(prompt, reason) for prompt in {id(p): p for p in prompts}.values()]  # a prompt's K rows: one failure

    def _count_retry(self, *_: Any) -> None:
        self.retries += 1

    # ------------------------------------------------------------------ the monitors
    def monitor(self, images: list, prompts: list[Prompt]) -> list[dict[str, float]]:
        """Each monitor's score of each image (``{}`` per image without monitors)."""
        per_image: list[dict[str, float]] = [{} for _ in images]
        for name, monitor in self.monitors.items():
            with self.timings.phase("monitor"):
                try:
                    out = score(monitor, images, prompts, self.policy, on_retry=self._count_retry)
                except Exception as err:
                    err.add_note(f"monitor {name!r} failed on prompts {[p.index for p in prompts]}. {RESUME_NOTE}.")
                    raise
            for scores, value in zip(per_image, out.scores.tolist()):
                scores[name] = value
        return per_image

    def monitor_steps(self, states: list[PromptState]) -> None:
        """``monitor_every_step``: score each state's latest step's best image (stage 0's plain one is already scored)."""
        if not (self.monitors and self.every_step):
            return
        todo = []
        for state in states:
            if state.last.image is state.initial_image:
                state.history[-1].monitors = dict(state.initial_monitors)
            else:
                todo.append(state)
        if todo:
            for state, scores in zip(todo, self.monitor([s.last.image for s in todo], [s.prompt for s in todo])):
                state.history[-1].monitors = scores

    def result_monitors(self, state: PromptState, chosen: Sample, step: int) -> dict[str, dict[str, float]]:
        """``{name: {"initial", "selected"}}`` of a result, added to the means ``monitor_logs``
        reports: scores already taken are reused, else the selected image is scored now."""
        if not self.monitors:
            return {}
        if chosen.image is state.initial_image:
            selected = state.initial_monitors
        elif state.history[step].monitors:  # monitor_every_step scored the step's best image, which is ``chosen``
            selected = state.history[step].monitors
        else:
            selected = self.monitor([chosen.image], [state.prompt])[0]
        out = {name: {"initial": state.initial_monitors[name], "selected": selected[name]} for name in self.monitors}
        for name, scores in out.items():
            for when, value in scores.items():
                self._sums[name, when] = self._sums.get((name, when), 0.0) + value
        return out

    def monitor_logs(self, scored: list[PromptState], finished: int) -> dict[str, tuple[float, int]]:
        """``{metric: (value, batch size)}``: each monitor's mean over this step's scored prompts
        (``monitor_every_step``) and its initial / selected means over the ``finished`` results."""
        logs = {}
        for name in self.monitors:
            stepped = [s.history[-1].monitors[name] for s in scored if s.history[-1].monitors]
            if stepped:
                logs[f"monitor/{name}/step"] = (sum(stepped) / len(stepped), len(stepped))
            for when in ("initial", "selected") if finished else ():
                logs[f"monitor/{name}/{when}"] = (self._sums[name, when] / finished, finished)
        return logs
