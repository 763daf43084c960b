"""Step orders: the schedule alone, and through MILRModule (which latents each update moves)."""

from __future__ import annotations

import pytest
from lightning import Callback

import milr
from milr.schedule import StepSchedule
from tests.helpers import ConstantReward

BOTH = ("text", "image")


def test_joint_moves_every_optimised_group_after_every_reward():
    assert [StepSchedule("joint", BOTH, 4).groups(s) for s in range(4)] == [BOTH] * 4
    assert StepSchedule("joint", ("image",), 4).groups(0) == ("image",)


def test_phased_and_interleaved_orders():
    text_image = StepSchedule("text_image", BOTH, 6)  # phase_steps = 6 // 2
    assert [text_image.groups(s)[0] for s in range(6)] == ["text"] * 3 + ["image"] * 3
    image_text = StepSchedule("image_text", BOTH, 6, phase_steps=2)
    assert [image_text.groups(s)[0] for s in range(6)] == ["image"] * 2 + ["text"] * 4
    interleaved = StepSchedule("interleaved_text_image", BOTH, 6)
    assert [interleaved.groups(s) for s in range(4)] == [("text",), ("image",), ("text",), ("image",)]


@pytest.mark.parametrize(
    ("args", "match"),
    [(("text_image", ("text",), 4), "mode='both'"), (("sideways", BOTH, 4), "step_order"),
     (("interleaved_text_image", BOTH, 4, 2), "phase_steps"), (("text_image", BOTH, 4, -1), ">= 0")],
)
def test_bad_schedules_are_clear_errors(args, match):
    with pytest.raises(ValueError, match=match):
        StepSchedule(*args)


class Grads(Callback):
    """Per update: which latent groups received a gradient."""

    def __init__(self) -> None:
        self.groups: list[tuple[str, ...]] = []

    def on_after_backward(self, trainer, pl_module) -> None:
        text = any(p.grad is not None for p in pl_module.text_latents)
        image = any(p.grad is not None for p in pl_module.image_latents)
        self.groups.append(tuple(g for g, moved in (("text", text), ("image", image)) if moved))


@pytest.mark.parametrize(
    ("order", "expected"),
    [("joint", [BOTH] * 4), ("text_image", [("text",)] * 2 + [("image",)] * 2), ("image_text", [("image",)] * 2 + [("text",)] * 2),
     ("interleaved_text_image", [("text",), ("image",)] * 2)],
)
def test_each_order_moves_the_scheduled_latents_and_every_sub_step_is_one_scored_step(tiny, order, expected):
    reward, grads = ConstantReward(0.5), Grads()
    [result] = milr.optimize(["a red apple"], tiny, reward, mode="both", step_order=order, image_ratio=0.25,
                             text_ratio=0.5, max_steps=4, callbacks=[grads])
    assert grads.groups[: len(expected)] == expected and all(g == () for g in grads.groups[len(expected):])
    assert reward.calls == 5 and len(result.rewards) == 5 and result.steps == 4  # one reward call per (sub-)step
