"""The latents' gradient through MILRModule equals the hand-written REINFORCE formula.

One reference step with a fixed reward r and K = 1: loss = −(r − 1)·(log π_t + log π_v), where
log π_t = Σ_i log softmax(W_lm z_t,i)[a_i] and log π_v = Σ_j log softmax((u_j + w(c_j − u_j)) / T)[b_j],
c_j / u_j = generation_head of the conditional / unconditional row of z_v,j. The backbone here uses
w = 3 and T = 0.7 (not the defaults), and both are written out below, so a loss that used the
conditional row alone, another w or T, or dropped a term fails.
"""

from __future__ import annotations

import pytest
import torch
from lightning import Callback

import milr
from milr.backbone import JanusBackbone
from tests.helpers import ConstantReward

R = 0.3
W, T = 3.0, 0.7


@pytest.fixture(scope="module")
def tiny_wt() -> JanusBackbone:
    return JanusBackbone.tiny(seed=0, grid=4, max_think_tokens=12, guidance_scale=W, temperature=T)


class FirstUpdate(Callback):
    """The latents, their gradients and the tokens of the first update."""

    def on_after_backward(self, trainer, pl_module) -> None:
        if hasattr(self, "samples"):
            return
        [state] = pl_module.active()
        self.samples = state.samples
        self.text = [(p.detach().clone(), p.grad.clone()) for p in pl_module.text_latents]
        self.image = [(p.detach().clone(), p.grad.clone()) for p in pl_module.image_latents]


def text_gradient(bb: JanusBackbone, z: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """d/dz of −(r − 1)·Σ_i log softmax(W z_i)[a_i] = −(r − 1)·W^T (e_{a_i} − softmax(W z_i))."""
    weight = bb.model.lm_head.weight.float()  # [V, d], no bias
    probs = torch.softmax(z @ weight.T, dim=-1)
    onehot = torch.nn.functional.one_hot(tokens, weight.shape[0]).float()
    return -(R - 1.0) * (onehot - probs) @ weight


def image_gradient(bb: JanusBackbone, z: torch.Tensor, tokens: torch.Tensor | None) -> torch.Tensor:
    """Autograd of the hand-written CFG loss, with the generation head called directly
    (``tokens=None``: the argmax tokens of the fused logits, as the reference scores)."""
    z = z.clone().requires_grad_(True)
    head = bb.model.model.generation_head
    cond, uncond = head(z[:, 0]).float(), head(z[:, 1]).float()
    fused = (uncond + W * (cond - uncond)) / T
    tokens = fused.detach().argmax(-1) if tokens is None else tokens
    log_pi = torch.log_softmax(fused, dim=-1).gather(-1, tokens[:, None]).sum()
    (grad,) = torch.autograd.grad(-(R - 1.0) * log_pi, z)
    return grad


@pytest.mark.parametrize("mode", ["text", "image", "both"])
def test_latent_gradients_equal_the_formula(tiny_wt, mode):
    grab = FirstUpdate()
    milr.optimize(["a red apple"], tiny_wt, ConstantReward(R), mode=mode, text_ratio=0.5, image_ratio=0.25,
                  max_steps=1, callbacks=[grab])
    [sample] = grab.samples
    assert len(grab.text) == (mode != "image") and len(grab.image) == (mode != "text")
    for z, grad in grab.text:
        assert len(sample.text_prefix) == len(z) > 0
        torch.testing.assert_close(grad, text_gradient(tiny_wt, z, sample.text_prefix), rtol=1e-4, atol=1e-6)
    for z, grad in grab.image:
        assert len(sample.image_prefix) == len(z) == 4
        expected = image_gradient(tiny_wt, z, sample.image_prefix)
        assert expected[:, 1].abs().sum() > 0  # the unconditional row has a gradient of its own
        torch.testing.assert_close(grad, expected, rtol=1e-4, atol=1e-6)


def test_argmax_image_loss_tokens_differentiate_the_latents_argmax_not_the_sampled_prefix(tiny_wt):
    grab = FirstUpdate()
    milr.optimize(["a red apple"], tiny_wt, ConstantReward(R), mode="image", image_ratio=0.25, max_steps=1,
                  image_loss_tokens="argmax", callbacks=[grab])
    [(z, grad)] = grab.image
    expected = image_gradient(tiny_wt, z, None)
    torch.testing.assert_close(grad, expected, rtol=1e-4, atol=1e-6)
    assert not torch.allclose(expected, image_gradient(tiny_wt, z, grab.samples[0].image_prefix))  # the option matters
