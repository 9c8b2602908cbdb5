"""MONAI's NIfTI and ITK image writers, writing on the input's own grid when asked not to resample.

MONAI 1.6.1's ``NibabelWriter.set_metadata`` and ``ITKWriter.set_metadata`` resample even with ``resample=False``
(onto the same grid), and that resampling fails with ``Affine ... is not invertible`` on grids whose first two array
axes lie in one world plane without the first world axis: sagittal acquisitions kept in acquisition order (array axes
A, S, L), as dcm2niix writes them and as ITK reads a sagittal DICOM series. ``SaveImage`` reports that as "cannot find
a suitable writer". With ``resample=False`` the writers here keep the array and the affine as they are, which is what
that resampling onto the same grid amounts to; with ``resample=True`` they are MONAI's.

The bundles' ``SaveImaged`` take :func:`writer_for` their output extension, and batch inference
(:mod:`custom_nets.inference`) writes label maps, probabilities and uncertainty maps with :func:`write_image`, so both
write the same files.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import numpy as np
from monai.data import ITKWriter, NibabelWriter

from custom_nets.file_types import NIFTI_ENDINGS

__all__ = ["GridNibabelWriter", "GridITKWriter", "writer_for", "write_image"]


class _KeepsGrid:
    """``set_metadata`` that takes the affine as it is when ``resample`` is false (see the module docstring)."""

    def set_metadata(self, meta_dict: Mapping | None, resample: bool = True, **options) -> None:
        if resample:
            super().set_metadata(meta_dict, resample=True, **options)  # type: ignore[misc]
            return
        _, affine, _ = self.get_meta_info(meta_dict)  # type: ignore[attr-defined]
        if self.output_dtype is None and hasattr(self.data_obj, "dtype"):  # type: ignore[attr-defined]
            self.output_dtype = self.data_obj.dtype  # type: ignore[attr-defined]
        self.affine = None if affine is None else np.asarray(affine, dtype=np.float64)


class GridNibabelWriter(_KeepsGrid, NibabelWriter):
    """MONAI's ``NibabelWriter`` that writes on the given grid when ``resample=False`` (sform and qform codes 1)."""


class GridITKWriter(_KeepsGrid, ITKWriter):
    """MONAI's ``ITKWriter`` that writes on the given grid when ``resample=False`` (NRRD, MetaImage, ...)."""


def writer_for(output_ext: str) -> type:
    """The writer class for ``SaveImage(writer=...)`` of files ending in ``output_ext``: NIfTI through nibabel,
    anything else through ITK."""
    return GridNibabelWriter if str(output_ext).lower().endswith(NIFTI_ENDINGS) else GridITKWriter


def write_image(array: np.ndarray, affine: np.ndarray, path: str | os.PathLike) -> None:
    """Write ``array`` (``(x, y, z)``, or ``(x, y, z, C)`` channels last) with ``affine`` (RAS) to ``path`` on exactly
    that grid and in the array's dtype: NIfTI (sform and qform codes 1) or, for other extensions, ITK (compressed).

    It builds the file with the writers' own ``create_backend_obj``, as their ``write`` does, without
    ``set_data_array``, which squeezes the slice axis of a one-slice volume.
    """
    import itk
    import nibabel as nib

    if writer_for(str(path)) is GridNibabelWriter:
        image = NibabelWriter.create_backend_obj(array, affine=affine, dtype=array.dtype)
        image.set_sform(affine, code=1)
        image.set_qform(affine, code=1)
        nib.save(image, str(path))
    else:
        channel_dim = -1 if array.ndim == 4 else None
        image = ITKWriter.create_backend_obj(array, channel_dim=channel_dim, affine=affine, dtype=array.dtype)
        itk.imwrite(image, str(path), compression=True)
