"""The data layer: one dataset layout (:mod:`.dataset`), the demo data in it (:mod:`.demo`), synthetic datasets for
tests (:mod:`.synthetic`), the public layouts' discovery and demo generators, and case naming."""

from . import brats, images, lgg, naming, polyp_skin, uwmadison
from .dataset import (
    Dataset,
    Task,
    check_task,
    inference_datalist,
    open_dataset,
    prepare_task,
    read_dataset,
    trained_task,
)
from .errors import DatasetError

__all__ = ["Dataset", "DatasetError", "Task", "check_task", "inference_datalist", "open_dataset", "prepare_task",
           "read_dataset", "trained_task", "brats", "images", "lgg", "naming", "polyp_skin", "uwmadison"]

from . import uwmadison_bundle  # noqa: E402

__all__ += ["uwmadison_bundle"]

from . import demo  # noqa: E402  (after the layout modules it generates with)

__all__ += ["demo"]
