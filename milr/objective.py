"""MILR's REINFORCE objective on the latent prefix (docs/method.md).

Gradients reach the latents only through the two heads: ``lm_head`` for text latents and the
image generation head + CFG mix for image latents. Nothing here touches the transformer.
"""

from __future__ import annotations

from typing import Literal

import torch

Estimator = Literal["reference", "rloo"]


def prefix_length(ratio: float, total: int) -> int:
    """``floor(ratio · total)`` as the reference computes it (``int(text_k * total)``)."""
    if not 0.0 <= ratio <= 1.0:
        raise ValueError(f"prefix ratio must be in [0, 1], got {ratio}")
    return min(int(ratio * total), total)


def token_log_prob(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """Summed log-probability of ``tokens [..., L]`` under ``logits [..., L, V]`` → ``[...]``."""
    logp = torch.log_softmax(logits.float(), dim=-1)
    return logp.gather(-1, tokens.unsqueeze(-1)).squeeze(-1).sum(-1)


def advantages(rewards: torch.Tensor, estimator: Estimator) -> torch.Tensor:
    """Per-sample weights of the score function, ``rewards [K]`` → ``[K]``.

    ``reference``: ``r − 1`` (the paper's baseline 1; with rewards in [0, 1] every update lowers
    the log-probability of the tokens used, the reward only scales the step).
    ``rloo``: ``r_k − mean_{j≠k} r_j`` (leave-one-out baseline; the sign depends on the reward).
    """
    if estimator == "reference":
        return rewards - 1.0
    if estimator == "rloo":
        k = rewards.numel()
        if k < 2:
            raise ValueError("the rloo estimator needs samples_per_step >= 2")
        return rewards - (rewards.sum() - rewards) / (k - 1)
    raise ValueError(f"unknown estimator {estimator!r}; choose 'reference' or 'rloo'")


def reinforce_loss(log_probs: torch.Tensor, rewards: torch.Tensor, estimator: Estimator) -> torch.Tensor:
    """``−mean_k A_k · log π(sample_k)``; minimising it is one policy-gradient ascent step on E[R]."""
    adv = advantages(rewards.to(log_probs.device, torch.float32), estimator).detach()
    return -(adv * log_probs).mean()
