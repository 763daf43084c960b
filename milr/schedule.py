"""Step orders: which latents the update after each scored step moves.

MILR's own order (``joint``) updates every optimised latent after every reward, from that one
reward. The authors' ordering ablations (``src/opt_generation_janus_text_image.py``) move one
group at a time, and every sub-step generates and scores an image, so here each sub-step is one
MILR step (one reward call, one entry in ``rewards``, one unit of ``max_steps``):

- ``text_image``: text updates for ``phase_steps`` steps, then image updates (the image prefix
  is still sampled from the unchanged image latents during the text phase, as theirs is);
- ``image_text``: the reverse (the think text stays fixed during the image phase);
- ``interleaved_text_image``: text, image, text, image, ... (their "two reward calls per step":
  one of their outer steps is two steps here).

Their text and image phases are ``max_text_steps`` and ``max_image_steps`` long, so their run
with N steps per phase is ``max_steps = 2N, phase_steps = N`` here; their interleaved run with
N outer steps is ``max_steps = 2N``.
"""

from __future__ import annotations

from typing import Literal

StepOrder = Literal["joint", "text_image", "image_text", "interleaved_text_image"]
STEP_ORDERS = ("joint", "text_image", "image_text", "interleaved_text_image")
Group = Literal["text", "image"]


class StepSchedule:
    """``groups(step)``: the latent groups the update after the reward of ``step`` moves
    (step 0 = the initial generation, so ``groups(0)`` is the first update)."""

    def __init__(self, order: StepOrder, groups: tuple[Group, ...], max_steps: int, phase_steps: int | None = None) -> None:
        if order not in STEP_ORDERS:
            raise ValueError(f"step_order must be one of {STEP_ORDERS}, got {order!r}")
        if order != "joint" and set(groups) != {"text", "image"}:
            raise ValueError(f"step_order={order!r} alternates text and image latents: it needs mode='both'")
        if phase_steps is not None and order not in ("text_image", "image_text"):
            raise ValueError(f"phase_steps applies to step_order 'text_image' / 'image_text', not {order!r}")
        self.order = order
        self.all = groups
        self.phase_steps = max_steps // 2 if phase_steps is None else phase_steps
        if self.phase_steps < 0:
            raise ValueError(f"phase_steps must be >= 0, got {phase_steps}")

    def groups(self, step: int) -> tuple[Group, ...]:
        if self.order == "joint":
            return self.all
        if self.order == "interleaved_text_image":
            return ("text",) if step % 2 == 0 else ("image",)
        first, second = ("text", "image") if self.order == "text_image" else ("image", "text")
        return (first,) if step < self.phase_steps else (second,)
