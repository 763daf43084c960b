"""The run's choices resolved once: what ``method``, ``mode``, ``estimator``, ``select`` and
``image_loss_tokens`` mean for a MILR step.

``MILRModule`` and its parts ask a ``Plan`` (``plan.updates``, ``plan.uses_text``, ...) instead
of comparing option strings, so a new method or estimator changes this file and
``milr.methods``, not the step.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from milr.methods import UPDATING, Method, optimised_reward, step_budget
from milr.objective import Estimator, prefix_length
from milr.options import MILROptions, Mode
from milr.schedule import StepSchedule


@dataclass(frozen=True)
class Plan:
    """What every step does under one set of options (built by ``Plan.of``)."""

    mode: Mode
    method: Method
    estimator: Estimator
    updates: bool  # the latents move (``milr``, ``anti_reward``); other methods take no loss
    uses_text: bool  # the think-text latents are optimised (mode ``text`` / ``both``)
    uses_image: bool  # the image latents are optimised (mode ``image`` / ``both``)
    think_in_image: bool  # the image prompt carries the think text, so stage 0 generates one
    from_latents: bool  # later steps decode from the latents; best-of-N re-samples stage 0's image prompt
    sample_think: bool  # best-of-N draws a fresh think text before each later image (``best_of_n_think: sample``)
    k: int  # candidates per prompt each time ``Decoder.candidates`` decodes
    stage0_candidates: bool  # rloo: stage 0 also decodes k candidates, the first update's baseline
    sample_text_prefix: bool  # rloo samples the text prefix from its latents; the reference takes the argmax
    argmax_image_loss: bool  # the loss scores the latents' argmax image tokens (the reference), not the sampled ones
    select_best: bool  # the result is the best-reward image, else the last one
    step_budget: int  # steps after stage 0 a prompt may take
    image_prefix_len: int  # image tokens whose latents are optimised (0 unless ``uses_image``)
    schedule: StepSchedule  # which latent groups each update moves

    @classmethod
    def of(cls, options: MILROptions, image_tokens: int) -> Plan:
        """The plan of ``options`` for a backbone whose images have ``image_tokens`` tokens."""
        uses_text, uses_image = "text" in options.groups, "image" in options.groups
        image_prefix_len = prefix_length(options.image_ratio, image_tokens) if uses_image else 0
        if uses_image and image_prefix_len == 0:
            raise ValueError(
                f"image_ratio={options.image_ratio} × {image_tokens} image tokens floors to 0 latent "
                "tokens: nothing to optimise. Raise image_ratio or use mode='text'."
            )
        updates = options.method in UPDATING
        from_latents = options.method != "best_of_n"
        rloo = options.estimator == "rloo"
        return cls(
            mode=options.mode,
            method=options.method,
            estimator=options.estimator,
            updates=updates,
            uses_text=uses_text,
            uses_image=uses_image,
            think_in_image=uses_text or options.image_mode_think,
            from_latents=from_latents,
            sample_think=options.best_of_n_think == "sample",
            k=options.samples_per_step if from_latents else 1,
            stage0_candidates=rloo and updates,
            sample_text_prefix=rloo,
            argmax_image_loss=options.image_loss_tokens == "argmax",
            select_best=options.select == "best",
            step_budget=step_budget(options.method, options.max_steps, options.estimator, options.samples_per_step, options.best_of_n),
            image_prefix_len=image_prefix_len,
            schedule=options.schedule(),
        )

    def optimised_reward(self, rewards: torch.Tensor) -> torch.Tensor:
        """What the update maximises: R, or 1 − R for the ``anti_reward`` control."""
        return optimised_reward(self.method, rewards)
