"""custom_nets.benchmarking: the synthetic BraTS case and the window count the benchmark reports (no timing)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.inferers import sliding_window_inference

from custom_nets.benchmarking import ENHANCING, NECROSIS, OEDEMA, synthetic_brats_case, window_count


def test_synthetic_case_is_deterministic_with_a_zero_background() -> None:
    image, label = synthetic_brats_case((64, 72, 56), seed=3, brain_fraction=(0.8, 0.8, 0.8))
    again, label_again = synthetic_brats_case((64, 72, 56), seed=3, brain_fraction=(0.8, 0.8, 0.8))
    other, _ = synthetic_brats_case((64, 72, 56), seed=4, brain_fraction=(0.8, 0.8, 0.8))
    assert image.shape == (4, 64, 72, 56) and image.dtype == np.float32 and label.dtype == np.uint8
    assert np.array_equal(image, again) and np.array_equal(label, label_again) and not np.array_equal(image, other)
    brain = image.any(axis=0)
    assert np.all(image[:, ~brain] == 0) and np.all(image[:, brain] > 0)  # every channel nonzero in the brain
    assert 0.2 < brain.mean() < 0.4  # an ellipsoid of 0.8 x the volume's half-axes: pi/6 * 0.512
    assert set(np.unique(label)) == {0, NECROSIS, OEDEMA, ENHANCING}
    assert np.all(brain[label > 0])  # the tumour lies in the brain
    # the enhancing rim is bright on T1ce (channel 2), the oedema on FLAIR (channel 0)
    assert image[2][label == ENHANCING].mean() > 1.5 * image[2][(label == 0) & brain].mean()
    assert image[0][label == OEDEMA].mean() > 1.5 * image[0][(label == 0) & brain].mean()


@pytest.mark.parametrize("spatial,roi,overlap", [((48, 40, 33), (16, 16, 16), 0.5), ((50, 20, 9), (32, 32, 8), 0.25),
                                                  ((64, 64, 64), (64, 64, 64), 0.0)])
def test_window_count_is_monai_s(spatial: tuple, roi: tuple, overlap: float) -> None:
    calls = []

    def network(x: torch.Tensor) -> torch.Tensor:
        calls.append(x.shape[0])
        return x

    sliding_window_inference(torch.zeros(1, 1, *spatial), roi, 1, network, overlap=overlap)
    assert window_count(spatial, roi, overlap) == sum(calls)
