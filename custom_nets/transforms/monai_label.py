"""The last postprocessing step of the 2D bundles when MONAI Label serves them; the identity everywhere else."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform

from custom_nets.transforms.multilabel import multilabel_to_label_map

__all__ = ["MonaiLabelOutputd"]

# file types that hold an 8-bit label map losslessly and that MONAI Label's writer (ITK) writes
LABEL_EXTENSIONS = (".png", ".tif", ".tiff", ".nii", ".nii.gz", ".nrrd", ".mha", ".mhd")


def _extension(path: str) -> str:
    name = path.lower()
    for ext in (".nii.gz", ".seg.nrrd"):
        if name.endswith(ext):
            return ext
    dot = name.rfind(".")
    return name[dot:] if dot > max(name.rfind("/"), name.rfind("\\")) else ""


class MonaiLabelOutputd(MapTransform):
    """Turn a 2D bundle's ``(C, *spatial)`` prediction into the 2D label map MONAI Label writes; else do nothing.

    MONAI Label (0.8.x) runs a bundle's ``postprocessing`` without ``SaveImaged``, then its own ``Restored`` and
    ``Writer``: the writer keeps a channel axis of a 2D result (a ``(1, H, W)`` "3D" image), writes the file type of
    the input (it fails on JPEG, which is lossy anyway) and takes the array as ``(x, y)`` (MONAI's default
    ``reverse_indexing=True``). This transform, placed at the end of the postprocessing (after ``SaveImaged``, so a
    normal bundle run has written its files already), makes the result a ``uint8`` ``(x, y)`` label map:

    - ``multi_label=False``: the single channel of a ``(1, *spatial)`` prediction (its values are the labels);
      ``multi_label=True``: binary channels to values ``c + 1`` where channel ``c`` is set, the **later** channel
      winning where they overlap (:class:`~custom_nets.transforms.MultiLabelToLabelMapd`'s rule);
    - ``reverse_indexing=False`` (images read as ``(y, x)``, e.g. the polyp bundles): the axes are reversed to
      ``(x, y)``, which is also what MONAI Label's ``Restored`` compares with the input's ``spatial_shape`` ``(W, H)``
      (so it does not resize the result);
    - it sets ``data["result_extension"]`` (the file type MONAI Label writes) to ``extension`` (default ``.png``)
      when the input's type cannot hold a label map losslessly (JPEG, ...), unless the request set one.

    It acts only on MONAI Label's requests, recognised by ``request_key`` (``image_path``: MONAI Label's inference
    task adds the input's path under that key to every request, and its writer names the result after it). The
    bundle's own runs (``monai.bundle run``), its evaluation and :mod:`custom_nets.inference` have no such key, so for
    them the data passes unchanged.
    """

    def __init__(
        self,
        keys: KeysCollection,
        multi_label: bool = False,
        reverse_indexing: bool = True,
        extension: str = ".png",
        label_extensions: Sequence[str] = LABEL_EXTENSIONS,
        request_key: str = "image_path",
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.multi_label = multi_label
        self.reverse_indexing = reverse_indexing
        self.extension = extension
        self.label_extensions = tuple(e.lower() for e in label_extensions)
        self.request_key = request_key

    def label_map(self, pred: torch.Tensor) -> torch.Tensor:
        """``(C, *spatial)`` prediction -> ``uint8`` label map ``(*spatial)`` in ``(x, y)`` order."""
        array = pred.as_tensor() if isinstance(pred, MetaTensor) else torch.as_tensor(pred)
        array = array.detach().cpu()
        if self.multi_label:
            label = multilabel_to_label_map(array)
        else:
            if array.shape[0] != 1:
                raise ValueError(f"expected a one-channel prediction (1, *spatial), got {tuple(array.shape)}; "
                                 "multi_label=True for binary channels")
            values = array[0].float().round()
            if values.min() < 0 or values.max() > 255:
                raise ValueError("the prediction is no uint8 label map (values outside 0-255)")
            label = values.to(torch.uint8)
        if not self.reverse_indexing:
            label = label.permute(*reversed(range(label.ndim)))
        return label.contiguous()

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        path = d.get(self.request_key)
        if not isinstance(path, str):
            return d
        for key in self.key_iterator(d):
            d[key] = self.label_map(d[key])
        if not d.get("result_extension") and _extension(path) not in self.label_extensions:
            d["result_extension"] = self.extension
        return d
