"""The latent slots: per slot, the text ``[Lt, d]`` and/or image ``[Lv, 2, d]`` latents of the prompt
holding it, as ``nn.Parameter``s the optimiser moves. A prompt's latents start from its stage-0
hidden states (``reset``), are emptied when it leaves, and travel with its ``snapshot`` to
another process, where ``restore`` seats it in a slot exactly where it was.

The parameter lists are the module's only parameters (``MILRModule.text_latents`` /
``image_latents``); resetting a slot also drops its optimiser state, so Adam's momentum never
carries from one prompt to the next.
"""

from __future__ import annotations

import copy
import time
from typing import Any

import torch
from torch import nn

from milr.plan import Plan
from milr.state import PromptState


class LatentSlots:
    """``size`` slots of latents of width ``hidden_size``, in ``dtype``, for the groups ``plan`` optimises."""

    def __init__(self, plan: Plan, size: int, hidden_size: int, dtype: torch.dtype) -> None:
        self.plan, self.hidden_size, self.dtype = plan, hidden_size, dtype
        d = hidden_size
        self.text = nn.ParameterList([nn.Parameter(torch.zeros(0, d, dtype=dtype)) for _ in range(size)] if plan.uses_text else [])
        self.image = nn.ParameterList([nn.Parameter(torch.zeros(0, 2, d, dtype=dtype)) for _ in range(size)] if plan.uses_image else [])

    def of(self, slot: int) -> list[nn.Parameter]:
        """The parameters of ``slot``: text, then image."""
        return ([self.text[slot]] if self.plan.uses_text else []) + ([self.image[slot]] if self.plan.uses_image else [])

    def reset(self, slot: int, optimizers: list[torch.optim.Optimizer], text: torch.Tensor | None = None, image: torch.Tensor | None = None) -> None:
        """Give ``slot`` new latent values (empty when freed) and fresh optimiser state."""
        d = self.hidden_size
        values = ([torch.zeros(0, d) if text is None else text] if self.plan.uses_text else []) + (
            [torch.zeros(0, 2, d) if image is None else image] if self.plan.uses_image else []
        )
        for param, value in zip(self.of(slot), values):
            param.data = value.detach().to(device=param.device, dtype=self.dtype).clone()
            param.grad = None
            for opt in optimizers:
                opt.state.pop(param, None)

    def snapshot(self, state: PromptState, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
        """Everything a running prompt needs to continue in another process exactly where it is:
        its bookkeeping, generator state, latents and optimiser state (taken after the update)."""
        params = self.of(state.slot)
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

    def restore(self, snapshot: dict[str, Any], slot: int, optimizer: torch.optim.Optimizer, device: torch.device) -> PromptState:
        """The prompt of ``snapshot`` in ``slot``: its latents and optimiser state put back, its
        generator (on ``device``) and clocks where they were."""
        state: PromptState = copy.copy(snapshot["state"])
        state.slot = slot
        state.generator = torch.Generator(device=device)
        state.generator.set_state(snapshot["generator"])
        now = time.perf_counter()
        state.started, state.step_started = now - snapshot["elapsed"][0], now - snapshot["elapsed"][1]
        params = self.of(slot)
        if len(params) != len(snapshot["latents"]):
            raise ValueError(f"prompt {state.prompt.uid}: its saved latents do not fit mode={self.plan.mode!r}")
        for param, value, opt_state in zip(params, snapshot["latents"], snapshot["optimizer"]):
            param.data = value.to(device=param.device, dtype=self.dtype).clone()
            param.grad = None
            optimizer.state.pop(param, None)
            if opt_state:
                optimizer.state[param] = {k: (v.to(param.device) if torch.is_tensor(v) and v.dim() else v) for k, v in opt_state.items()}
        return state
