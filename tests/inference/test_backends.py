"""Execution backends of batch inference (``scripts/segment.py --backend``): parity with eager PyTorch.

For one 3D bundle (arunet3d, sliding window, tiny widths) and one 2D bundle (unet2d, whole image, default widths),
with random weights: the probabilities before the threshold of the ``torchscript`` and ``onnxruntime`` backends are
within ``PROB_TOL`` of eager PyTorch, and the label maps are identical except at voxels where some eager probability
is within ``PROB_TOL`` of the 0.5 threshold. The inputs have an identity affine and sizes that need no padding, so the
network space and the input grid coincide voxel for voxel.

onnxruntime is an optional dependency (requirements-export.txt, included in requirements-dev.txt); the tests needing it
skip without it.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import copy_bundle, save_random_weights

from custom_nets.inference.backends import BACKENDS, build_backend
from custom_nets.inference.errors import SetupError

PROB_TOL = 1e-4
THRESHOLD = 0.5



def _available(backend: str) -> bool:
    if backend != "onnxruntime":
        return True
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def _meta_tensor(array: np.ndarray):
    from monai.data import MetaTensor
    from monai.utils import MetaKeys, SpaceKeys

    meta = {MetaKeys.ORIGINAL_AFFINE: np.eye(4), MetaKeys.SPATIAL_SHAPE: np.asarray(array.shape[1:]),
            MetaKeys.ORIGINAL_CHANNEL_DIM: 0, MetaKeys.SPACE: SpaceKeys.RAS, "filename_or_obj": "case"}
    return MetaTensor(torch.from_numpy(array.copy()), affine=torch.eye(4, dtype=torch.float64), meta=meta)


CASES = {
    # bundle, overrides, input (C, *spatial): 3D through a 32^3 sliding window of batch 2 (the last batch has one
    # window: another batch size than the export), 2D as a whole image of another size than the export example
    "arunet3d": ({"network_def#channels": [4, 8, 16, 32], "roi_size": [32, 32, 32], "inference_roi_size": [32, 32, 32],
                  "sw_batch_size": 2}, (4, 48, 40, 32)),
    "unet2d": ({}, (3, 96, 80)),
}


@pytest.fixture(scope="module", params=sorted(CASES))
def reference(request, tmp_path_factory: pytest.TempPathFactory):
    """``(bundle copy, overrides, input, eager label map, eager probabilities)``."""
    from custom_nets.inference import BundleSegmenter

    name = request.param
    overrides, shape = CASES[name]
    bundle = copy_bundle(name, tmp_path_factory.mktemp("backends"))
    save_random_weights(bundle, overrides, weight_scale=2.0)
    rng = np.random.default_rng(0)
    if name == "unet2d":
        image = rng.integers(0, 255, shape).astype(np.float32)
    else:
        image = rng.normal(size=shape).astype(np.float32)
        image[:, :4] = 0.0  # background, as in a skull-stripped scan
    with BundleSegmenter(bundle, device="cpu", overrides=overrides) as segmenter:
        probabilities: list[torch.Tensor] = []
        label = segmenter.predict(_meta_tensor(image), probabilities_out=probabilities)
    return bundle, overrides, image, label, probabilities[0]


@pytest.mark.parametrize("backend", [b for b in BACKENDS if b != "eager"])
def test_backend_matches_eager(reference, backend: str) -> None:
    from custom_nets.inference import BundleSegmenter

    if not _available(backend):
        pytest.skip("onnxruntime is not installed (pip install -r requirements-export.txt)")
    bundle, overrides, image, expected_label, expected_prob = reference
    with BundleSegmenter(bundle, device="cpu", overrides=overrides, backend=backend) as segmenter:
        probabilities: list[torch.Tensor] = []
        timings: dict[str, float] = {}
        label = segmenter.predict(_meta_tensor(image), timings=timings, probabilities_out=probabilities)
    assert timings["network"] > 0 and timings["pre"] >= 0 and timings["post"] >= 0
    prob = probabilities[0]
    assert prob.shape == expected_prob.shape
    difference = float((prob - expected_prob).abs().max())
    assert difference < PROB_TOL, f"{backend}: max abs probability difference {difference:.3g}"
    assert label.shape == expected_label.shape == image.shape[1:]
    near = (expected_prob - THRESHOLD).abs().lt(PROB_TOL).any(dim=0).numpy()
    assert near.shape == label.shape
    differing = label != expected_label
    assert not np.any(differing & ~near), f"{backend}: {int(np.sum(differing & ~near))} labels differ away from 0.5"
    assert 0 < np.count_nonzero(expected_label) < expected_label.size  # the check compared something


class _DeepSupervision(torch.nn.Module):
    """A network returning (final, auxiliary) even in eval mode."""

    def __init__(self) -> None:
        super().__init__()
        self.final = torch.nn.Conv2d(2, 3, 3, padding=1)
        self.aux = torch.nn.Conv2d(2, 3, 1)

    def forward(self, x: torch.Tensor):
        return self.final(x), self.aux(x) * 2


@pytest.mark.parametrize("backend", [b for b in BACKENDS if b != "eager"])
def test_multi_output_network_gives_its_first_output(backend: str, tmp_path: Path) -> None:
    if not _available(backend):
        pytest.skip("onnxruntime is not installed")
    torch.manual_seed(0)
    network = _DeepSupervision().eval()
    run = build_backend(backend, network, [1, 2, 32, 32], torch.device("cpu"), tmp_path, any_spatial_size=True)
    x = torch.randn(3, 2, 48, 40)
    with torch.no_grad():
        out = run(x)
        expected = network(x)[0]
    assert isinstance(out, torch.Tensor) and out.shape == expected.shape
    assert float((out - expected).abs().max()) < 1e-4
    assert run.calls == 1 and run.seconds > 0


def test_missing_onnxruntime_is_a_clear_setup_error(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime raises ImportError
    with pytest.raises(SetupError, match="requirements-export.txt"):
        build_backend("onnxruntime", torch.nn.Conv2d(1, 1, 1).eval(), [1, 1, 16, 16], torch.device("cpu"), tmp_path)
    with pytest.raises(SetupError, match="unknown backend"):
        build_backend("tensorrt", torch.nn.Conv2d(1, 1, 1).eval(), [1, 1, 16, 16], torch.device("cpu"), tmp_path)
