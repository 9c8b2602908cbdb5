"""Every bundle's two inference paths write the same label maps (issue 17): ``python -m monai.bundle run
--config_file inference.json`` (the bundle's own ``LoadImaged``/``SaveImaged``) and ``scripts/segment.py`` (batch
inference driving the same configs), for the same input and model.

The 3D test image lies on a sagittal grid (array axes A, S, L). The model is the bundle's network at tiny widths with
seeded random weights (scaled up so that the network labels something) and the task a user's own dataset gives it (``models/task.json``: two channels, two labels), so both paths
read multi-channel, nnU-Net-named inputs and write the task's label values on the input's grid.
"""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from conftest import BUNDLES, bundle_names, copy_bundle, run_bundle, save_random_weights
from PIL import Image
from tiny_networks import TINY, tiny_args

from custom_nets.data import read_dataset
from custom_nets.data.dataset import prepare_task
from custom_nets.data.synthetic import make_synthetic_dataset
from custom_nets.inference.cli import main

pytestmark = pytest.mark.usefixtures("one_thread")


def _spatial_dims(name: str) -> int:
    meta = json.loads((BUNDLES / name / "configs" / "metadata.json").read_text())
    return len(meta["network_data_format"]["inputs"]["image"]["spatial_shape"])


# a sagittal acquisition kept in acquisition order (array axes A, S, L), as dcm2niix writes one: MONAI 1.6's own
# NIfTI writer fails on this grid (custom_nets/writers.py)
SAGITTAL = np.array([[0.0, 0.0, -2.5, 30.0], [1.0, 0.0, 0.0, -40.0], [0.0, 1.2, 0.0, 10.0], [0.0, 0.0, 0.0, 1.0]])


@pytest.fixture(scope="module")
def datasets(tmp_path_factory) -> dict[int, Path]:
    root = tmp_path_factory.mktemp("paths")
    volumes = make_synthetic_dataset(root / "Dataset3D", spatial_dims=3, num_channels=2, num_labels=2, num_cases=2,
                                     shape=(28, 24, 12), spacing=(1.0, 1.2, 2.5), num_test=1)  # fmt: skip
    for test_image in (volumes / "imagesTs").iterdir():  # segmented on a sagittal grid, trained on an oblique one
        nib.save(nib.Nifti1Image(np.asarray(nib.load(test_image).dataobj), SAGITTAL), test_image)
    pictures = make_synthetic_dataset(root / "Dataset2D", spatial_dims=2, num_channels=2, num_labels=2, num_cases=2,
                                      shape=(72, 56), num_test=1)  # fmt: skip
    return {3: volumes, 2: pictures}


def _label_map(path: Path) -> np.ndarray:
    if path.name.endswith(".png"):
        with Image.open(path) as image:
            return np.asarray(image)
    return np.asarray(nib.load(path).dataobj)


@pytest.mark.parametrize("name", bundle_names())
def test_inference_json_and_segment_write_the_same_label_maps(name: str, datasets: dict[int, Path],
                                                              tmp_path: Path, elsewhere: Path) -> None:
    dims = _spatial_dims(name)
    data = datasets[dims]
    bundle = copy_bundle(name, tmp_path)
    prepare_task(read_dataset(data).task, bundle / "models")
    save_random_weights(bundle, TINY[name], weight_scale=4.0)
    (first_channel,) = sorted((data / "imagesTs").glob("*_0000.*"))
    case = first_channel.name.split("_0000")[0]

    bundle_out = tmp_path / "inference json"
    ext = ["--output_ext", ".png"] if dims == 2 else []
    run_bundle(["run", "--config_file", str(bundle / "configs" / "inference.json"), "--dataset_dir", str(data),
                "--output_dir", str(bundle_out), "--num_workers", "0", *ext, *tiny_args(name)], cwd=elsewhere)
    segment_out = tmp_path / "segment"
    overrides = [item for key, value in TINY[name].items() for item in ("--override", f"{key}={json.dumps(value)}")]
    assert main(["--bundle", str(bundle), "-i", str(data), "-o", str(segment_out), "--no-progress", "--trust", *overrides]) == 0

    (theirs,) = sorted(bundle_out.iterdir())
    (ours,) = [p for p in segment_out.iterdir() if p.name.startswith(case)]
    expected, found = _label_map(theirs), _label_map(ours)
    assert expected.shape == found.shape, (theirs.name, ours.name)
    np.testing.assert_array_equal(found, expected, err_msg=f"{name}: segment.py and inference.json disagree")
    assert set(np.unique(found).tolist()) <= {0, 1, 2}
    assert found.any(), f"{name}: the random network labels nothing, so the comparison means nothing"
    if dims == 3:
        np.testing.assert_allclose(nib.load(ours).affine, SAGITTAL, atol=1e-5)
        np.testing.assert_allclose(nib.load(theirs).affine, SAGITTAL, atol=1e-5)
