"""Prefix lengths and the REINFORCE estimators, as pure functions."""

from __future__ import annotations

import pytest
import torch

from milr.objective import advantages, prefix_length, reinforce_loss, token_log_prob


@pytest.mark.parametrize(
    ("ratio", "total", "expected"),
    [(0.2, 5, 1), (0.2, 4, 0), (0.02, 576, 11), (0.01, 576, 5), (0.1, 9, 0), (1.0, 7, 7), (0.0, 100, 0)],
)
def test_prefix_length_floors_like_the_reference(ratio, total, expected):
    assert prefix_length(ratio, total) == expected


def test_prefix_ratio_outside_unit_interval_is_an_error():
    with pytest.raises(ValueError, match="ratio"):
        prefix_length(1.5, 10)


def test_reference_advantage_is_reward_minus_one():
    assert advantages(torch.tensor([0.25, 1.0]), "reference").tolist() == [-0.75, 0.0]


def test_rloo_advantage_is_reward_minus_mean_of_the_others():
    adv = advantages(torch.tensor([1.0, 0.0, 0.5]), "rloo")
    torch.testing.assert_close(adv, torch.tensor([0.75, -0.75, 0.0]))
    assert abs(float(adv.sum())) < 1e-6


def test_rloo_with_one_sample_is_an_error():
    with pytest.raises(ValueError, match="samples_per_step"):
        advantages(torch.tensor([0.5]), "rloo")


def test_token_log_prob_sums_log_softmax_of_the_given_tokens():
    logits = torch.tensor([[0.0, 0.0], [2.0, 0.0]])
    expected = torch.log_softmax(logits, -1)[0, 1] + torch.log_softmax(logits, -1)[1, 0]
    torch.testing.assert_close(token_log_prob(logits, torch.tensor([1, 0])), expected)


def test_reinforce_loss_gradient_is_minus_advantage_times_score():
    lp = torch.tensor([-1.0, -2.0], requires_grad=True)
    reinforce_loss(lp, torch.tensor([1.0, 0.0]), "rloo").backward()
    torch.testing.assert_close(lp.grad, torch.tensor([-0.5, 0.5]))
