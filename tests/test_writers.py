"""custom_nets.writers: MONAI's NIfTI and ITK writers on any grid, and write_image."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor, NibabelWriter
from monai.transforms import LoadImage, SaveImage

from custom_nets.writers import GridITKWriter, GridNibabelWriter, write_image, writer_for

# array axes A, S, L: a sagittal acquisition in acquisition order
SAGITTAL = np.array([[0.0, 0.0, -2.5, 30.0], [1.0, 0.0, 0.0, -40.0], [0.0, 1.2, 0.0, 10.0], [0.0, 0.0, 0.0, 1.0]])
AXIAL = np.diag([0.8, 0.8, 3.0, 1.0])


def _label(shape=(8, 9, 10)) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 3, shape).astype(np.uint8)


def _save_image(tmp_path, ext: str, writer) -> np.ndarray:
    label = _label()
    image = MetaTensor(torch.as_tensor(label)[None], affine=torch.as_tensor(SAGITTAL),
                       meta={"filename_or_obj": f"case{ext}", "original_affine": SAGITTAL})  # fmt: skip
    saver = SaveImage(output_dir=tmp_path, output_postfix="seg", output_ext=ext, separate_folder=False,
                      resample=False, writer=writer, output_dtype=torch.uint8, print_log=False)  # fmt: skip
    saver(image)
    return label


def test_monai_writer_fails_on_a_sagittal_grid_ours_does_not(tmp_path) -> None:
    """The reason the module exists: if MONAI's own writer starts to write this grid, the workaround can go."""
    with pytest.raises(RuntimeError):
        _save_image(tmp_path / "monai", ".nii.gz", NibabelWriter)


@pytest.mark.parametrize("ext", [".nii.gz", ".nrrd", ".mha"])
def test_save_image_keeps_a_sagittal_grid(tmp_path, ext: str) -> None:
    assert writer_for(ext) is (GridNibabelWriter if ext == ".nii.gz" else GridITKWriter)
    label = _save_image(tmp_path, ext, writer_for(ext))
    back = LoadImage(image_only=True)(tmp_path / f"case_seg{ext}")
    np.testing.assert_array_equal(np.asarray(back), label)
    np.testing.assert_allclose(back.affine.numpy(), SAGITTAL, atol=1e-5)


@pytest.mark.parametrize("ext", [".nii.gz", ".nrrd"])
@pytest.mark.parametrize("affine", [SAGITTAL, AXIAL], ids=["sagittal", "axial"])
def test_write_image_round_trips_labels_one_slice_volumes_and_channels(tmp_path, ext: str, affine) -> None:
    cases = {
        "label": _label(),
        "one slice": _label((8, 9, 1)),
        "uint16": (_label().astype(np.uint16) * 1000),
        "channels last": np.random.default_rng(1).random((8, 9, 10, 2)).astype(np.float32),
    }
    for name, array in cases.items():
        path = tmp_path / f"{name.replace(' ', '_')}{ext}"
        write_image(array, affine, path)
        back = LoadImage(image_only=True, dtype=None)(path)
        assert tuple(back.shape) == array.shape, name
        np.testing.assert_allclose(np.asarray(back), array, err_msg=name)
        np.testing.assert_allclose(back.affine.numpy(), affine, atol=1e-5, err_msg=name)
