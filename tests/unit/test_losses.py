import math

import numpy as np
import pytest
import torch

from components.training.losses import d_loss, feature_matching, g_loss

REAL, FAKE = [0.0, 2.0], [0.0, -1.0]
sig = lambda x: 1 / (1 + math.exp(-x))


def test_d_loss_cross_entropy_with_one_sided_smoothing():
    expected = np.mean([-(0.9 * math.log(sig(x)) + 0.1 * math.log(1 - sig(x))) for x in REAL]) + np.mean(
        [-math.log(1 - sig(x)) for x in FAKE]
    )
    for name in ("minimax", "nonsaturating"):
        assert d_loss(name, torch.tensor(REAL), torch.tensor(FAKE), 0.9).item() == pytest.approx(expected, rel=1e-6)


def test_d_loss_hinge():
    expected = np.mean([max(0, 1 - x) for x in REAL]) + np.mean([max(0, 1 + x) for x in FAKE])  # (1+0)/2 + (1+0)/2
    assert d_loss("hinge", torch.tensor(REAL), torch.tensor(FAKE)).item() == pytest.approx(expected)


@pytest.mark.parametrize(
    "name,per_logit",
    [
        ("minimax", lambda x: math.log(1 - sig(x))),  # G minimises log(1 - D(G(z)))
        ("nonsaturating", lambda x: -math.log(sig(x))),  # G maximises log D(G(z))
        ("hinge", lambda x: -x),
    ],
)
def test_g_losses_by_hand(name, per_logit):
    logits = [0.0, 1.0, -2.0]
    assert g_loss(name, torch.tensor(logits)).item() == pytest.approx(np.mean([per_logit(x) for x in logits]), rel=1e-6)


def test_minimax_saturates_and_nonsaturating_does_not():
    # When D confidently rejects samples (logit -8), the minimax gradient vanishes; the non-saturating one does not.
    grads = {}
    for name in ("minimax", "nonsaturating"):
        logit = torch.tensor([-8.0], requires_grad=True)
        g_loss(name, logit).backward()
        grads[name] = abs(logit.grad.item())
    assert grads["minimax"] < 1e-3 < 0.9 < grads["nonsaturating"]


def test_feature_matching_by_hand():
    real, fake = torch.tensor([[1.0, 2.0], [3.0, 4.0]]), torch.tensor([[0.0, 0.0], [2.0, 2.0]])
    # means (2, 3) vs (1, 1): (1)^2 + (2)^2
    assert feature_matching(real, fake).item() == pytest.approx(5.0)


def test_unknown_loss_is_an_error():
    with pytest.raises(ValueError, match="unknown loss"):
        g_loss("wasserstein", torch.zeros(2))
