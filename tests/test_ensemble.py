"""Fold ensembles that average probabilities: custom_nets.ensemble."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from custom_nets.ensemble import ProbabilityEnsemble, load_ensemble


def conv(seed: int, out_channels: int = 2) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Conv3d(1, out_channels, 3, padding=1)


class DeepSupervised(nn.Module):
    """Returns (final, auxiliary) like a deeply supervised network."""

    def __init__(self, seed: int) -> None:
        super().__init__()
        self.net = conv(seed)

    def forward(self, x: torch.Tensor):
        y = self.net(x)
        return y, y * 0 + 100.0


def test_sigmoid_ensemble_is_the_mean_probability_of_its_members() -> None:
    x = torch.randn(2, 1, 6, 6, 6)
    members = [conv(0), conv(1), conv(2)]
    with torch.no_grad():
        expected = torch.stack([torch.sigmoid(m(x)) for m in members]).mean(0)
        out = ProbabilityEnsemble(members)(x)
    assert out.shape == (2, 2, 6, 6, 6)
    assert torch.allclose(torch.sigmoid(out), expected, atol=1e-5)
    # the mean of probabilities, not of logits: the two differ on these members
    with torch.no_grad():
        logit_mean = torch.sigmoid(torch.stack([m(x) for m in members]).mean(0))
    assert not torch.allclose(logit_mean, expected, atol=1e-4)


def test_one_repeated_member_changes_nothing_and_auxiliary_outputs_are_ignored() -> None:
    x = torch.randn(1, 1, 4, 4, 4)
    member = DeepSupervised(3)
    with torch.no_grad():
        single = torch.sigmoid(member(x)[0])
        out = torch.sigmoid(ProbabilityEnsemble([member, member])(x))
    assert torch.allclose(out, single, atol=1e-5)


def test_softmax_ensemble_gives_log_probabilities_that_sum_to_one() -> None:
    x = torch.randn(1, 1, 4, 4, 4)
    members = [conv(0, 3), conv(1, 3)]
    with torch.no_grad():
        out = ProbabilityEnsemble(members, activation="softmax")(x)
        expected = torch.stack([torch.softmax(m(x), 1) for m in members]).mean(0)
    assert torch.allclose(out.exp().sum(1), torch.ones(1, 4, 4, 4), atol=1e-5)
    assert torch.allclose(out.exp(), expected, atol=1e-5)


def test_bad_arguments_are_one_clear_error() -> None:
    with pytest.raises(ValueError, match="at least one member"):
        ProbabilityEnsemble([])
    with pytest.raises(ValueError, match="'sigmoid' or 'softmax'"):
        ProbabilityEnsemble([conv(0)], activation="relu")


def test_load_ensemble_builds_one_member_per_checkpoint(tmp_path: Path) -> None:
    paths = []
    for seed in (0, 1):
        path = tmp_path / f"fold_{seed}.pt"
        torch.save(conv(seed).state_dict(), path)
        paths.append(path)

    def load(network: nn.Module, path: Path) -> None:
        network.load_state_dict(torch.load(path, weights_only=True))

    ensemble = load_ensemble(lambda: conv(99), paths, load)
    assert isinstance(ensemble, ProbabilityEnsemble) and not ensemble.training
    for member, seed in zip(ensemble.members, (0, 1)):
        assert torch.equal(member.weight, conv(seed).weight)
    single = load_ensemble(lambda: conv(99), paths[:1], load)
    assert isinstance(single, nn.Conv3d) and torch.equal(single.weight, conv(0).weight)
