"""bai: Backend.AI in Rust, from Python.

``bai.ResourceSlot`` and ``bai.BinarySize`` are the exact slot arithmetic and byte sizes of the
Rust core; ``bai.scheduler`` plans sessions onto agents with the Rust scheduler; ``bai.Client``
and ``bai.AsyncClient`` talk to a manager (sessions, streaming execution, events, folders,
administration). Every error is a :class:`bai.BaiError`; the client's are
:class:`bai.ClientError`.
"""

from collections.abc import Mapping as _Mapping

from bai import scheduler
from bai._internal import (
    AsyncClient,
    AsyncEventStream,
    AsyncExecution,
    BinarySize,
    Client,
    EventStream,
    Execution,
    ResourceSlot,
    __version__,
)
from bai.errors import (
    ApiError,
    ArithmeticOverflowError,
    AuthError,
    BaiError,
    ClientError,
    ConfigError,
    GraphQLError,
    InvalidConfigError,
    InvalidInputError,
    InvalidSizeError,
    InvalidSlotError,
    InvalidSnapshotError,
    InvalidValueError,
    LocalFileError,
    NotFoundError,
    ProtocolError,
    RejectedError,
    UnreachableError,
)

# ResourceSlot implements the read-only mapping protocol (keys, items, [], in, len, iter)
_Mapping.register(ResourceSlot)

__all__ = [
    "ApiError",
    "ArithmeticOverflowError",
    "AsyncClient",
    "AsyncEventStream",
    "AsyncExecution",
    "AuthError",
    "BaiError",
    "BinarySize",
    "Client",
    "ClientError",
    "ConfigError",
    "EventStream",
    "Execution",
    "GraphQLError",
    "InvalidConfigError",
    "InvalidInputError",
    "InvalidSizeError",
    "InvalidSlotError",
    "InvalidSnapshotError",
    "InvalidValueError",
    "LocalFileError",
    "NotFoundError",
    "ProtocolError",
    "RejectedError",
    "ResourceSlot",
    "UnreachableError",
    "__version__",
    "scheduler",
]
