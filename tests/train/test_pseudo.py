"""Pseudo-labels (eq. 7) and the alpha(t) schedule."""
from __future__ import annotations

import pytest
import torch

from rxlib.train import alpha_schedule, pseudo_label_objective, pseudo_labels


def test_alpha_schedule_values():
    t1, t2, af = 10, 20, 3.0
    assert alpha_schedule(0, t1, t2, af) == 0.0
    assert alpha_schedule(t1, t1, t2, af) == 0.0
    assert alpha_schedule(15, t1, t2, af) == pytest.approx(1.5)  # midpoint: alpha_f / 2
    assert alpha_schedule(t2, t1, t2, af) == pytest.approx(af)
    assert alpha_schedule(100, t1, t2, af) == pytest.approx(af)
    assert alpha_schedule(t2 - 1e-9, t1, t2, af) == pytest.approx(af)  # continuous at T2


def test_alpha_schedule_bad_arguments():
    with pytest.raises(ValueError, match="T1=5, T2=5"):
        alpha_schedule(1, 5, 5, 1.0)
    with pytest.raises(ValueError, match="alpha_f"):
        alpha_schedule(1, 0, 5, -1.0)


def test_pseudo_labels_are_argmax_and_detached():
    logits = torch.tensor([[0.1, 2.0, -1.0], [3.0, 0.0, 0.5]], requires_grad=True)
    labels = pseudo_labels(logits)
    assert labels.tolist() == [1, 0] and labels.dtype == torch.int64 and not labels.requires_grad
    assert torch.equal(pseudo_labels(logits.softmax(1)), labels)
    with pytest.raises(ValueError, match="shape"):
        pseudo_labels(torch.zeros(3))


def test_eq7_objective():
    lab, unl = torch.tensor([1.0, 3.0]), torch.tensor([2.0, 4.0, 6.0])
    assert float(pseudo_label_objective(lab, unl, 0.5)) == pytest.approx(2.0 + 0.5 * 4.0)
    assert float(pseudo_label_objective(lab, unl[:0], 0.5)) == pytest.approx(2.0)
