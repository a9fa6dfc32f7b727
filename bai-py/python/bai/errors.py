"""The exceptions bai raises. Every one derives from :class:`BaiError`.

The native module raises these classes by name, and sets the structured parts of the Rust error
as attributes (``input``, ``reason``, ``slot``, ``path``, ``field``); an attribute that does not
apply is ``None``.
"""

from typing import Optional

__all__ = [
    "BaiError",
    "InvalidSlotError",
    "InvalidSizeError",
    "ArithmeticOverflowError",
    "InvalidSnapshotError",
    "InvalidConfigError",
    "InvalidValueError",
]


class BaiError(Exception):
    """Base class of every error raised by bai."""

    reason: Optional[str] = None


class InvalidSlotError(BaiError, ValueError):
    """A resource slot name or amount that cannot be used, e.g. ``{"cpu": "lots"}``."""

    slot: Optional[str] = None


class InvalidSizeError(BaiError, ValueError):
    """A byte size that does not parse, e.g. ``"4x"`` or ``-1``."""

    input: Optional[str] = None


class ArithmeticOverflowError(BaiError, OverflowError):
    """Slot or size arithmetic whose result is out of range (or a size that would be negative)."""

    slot: Optional[str] = None


class InvalidSnapshotError(BaiError, ValueError):
    """Scheduler input that does not convert; ``path`` says where, e.g. ``pending[2].kernels[0].id``."""

    path: Optional[str] = None


class InvalidConfigError(BaiError, ValueError):
    """A scheduler option that cannot be used; ``field`` names it."""

    field: Optional[str] = None


class InvalidValueError(BaiError, ValueError):
    """Any other bad value: a malformed id, status name or time."""
