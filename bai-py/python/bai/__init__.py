"""bai: Backend.AI in Rust, from Python.

``bai.ResourceSlot`` and ``bai.BinarySize`` are the exact slot arithmetic and byte sizes of the
Rust core; ``bai.scheduler`` plans sessions onto agents with the Rust scheduler. Every error is a
:class:`bai.BaiError`.
"""

from collections.abc import Mapping as _Mapping

from bai import scheduler
from bai._internal import BinarySize, ResourceSlot, __version__
from bai.errors import (
    ArithmeticOverflowError,
    BaiError,
    InvalidConfigError,
    InvalidSizeError,
    InvalidSlotError,
    InvalidSnapshotError,
    InvalidValueError,
)

# ResourceSlot implements the read-only mapping protocol (keys, items, [], in, len, iter)
_Mapping.register(ResourceSlot)

__all__ = [
    "ArithmeticOverflowError",
    "BaiError",
    "BinarySize",
    "InvalidConfigError",
    "InvalidSizeError",
    "InvalidSlotError",
    "InvalidSnapshotError",
    "InvalidValueError",
    "ResourceSlot",
    "__version__",
    "scheduler",
]
