"""Import torchvision, also where its compiled operators do not match the installed torch.

The registry's torchvision 0.28.0 is a CUDA build; beside the CPU build of torch 2.13.0 its C++
extension does not load, and ``import torchvision`` then fails in ``_meta_registrations`` with
``operator torchvision::nms does not exist`` (a known upstream problem): that module registers
fake kernels for ``torchvision::nms`` and ``torchvision::qnms`` without checking that the
operators exist. Where, and only where, that exact failure happens, we define the two operator
schemas (no kernels: calling ``torchvision.ops.nms`` still raises torchvision's own error) and
import again. Datasets, transforms and models, the parts robustcert uses, are pure Python and
work unchanged. On a machine whose torchvision matches its torch none of this runs.
"""

from __future__ import annotations

import importlib
import sys
from types import ModuleType

import torch

_MISSING_OPERATOR = "operator torchvision::nms does not exist"
_SCHEMAS = (
    "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
)
_library: torch.library.Library | None = None


def import_torchvision() -> ModuleType:
    """``import torchvision``, defining the two missing operator schemas if (and only if) needed."""
    try:
        return importlib.import_module("torchvision")
    except RuntimeError as err:
        if _MISSING_OPERATOR not in str(err):
            raise
    _forget_partial_import()
    _define_missing_schemas()
    return importlib.import_module("torchvision")


def _forget_partial_import() -> None:
    for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
        del sys.modules[name]


def _define_missing_schemas() -> None:
    global _library
    if _library is None:
        _library = torch.library.Library("torchvision", "FRAGMENT")
        for schema in _SCHEMAS:
            _library.define(schema)


torchvision = import_torchvision()
