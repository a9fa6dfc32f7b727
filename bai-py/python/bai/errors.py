"""The exceptions bai raises. Every one derives from :class:`BaiError`.

The native module raises these classes by name, and sets the structured parts of the Rust error
as attributes (``input``, ``reason``, ``slot``, ``path``, ``field``, ``status``, ``problem``,
…); an attribute that does not apply is ``None``.

The client's errors derive from :class:`ClientError`::

    BaiError
    └── ClientError                      (.hint: what to do about it, or None)
        ├── ApiError                     the server answered with an error status
        │   ├── NotFoundError            404 (also a name that matches no session)
        │   └── AuthError                401: bad keypair or clock skew
        ├── GraphQLError                 a GraphQL request returned errors (.errors)
        ├── UnreachableError             also a ConnectionError
        ├── ConfigError                  also a ValueError: unusable client settings
        ├── InvalidInputError            also a ValueError: a bad argument; nothing was sent
        ├── RejectedError                the server refused a mutation (ok: false)
        ├── ProtocolError                an answer the client does not understand
        └── LocalFileError               also an OSError: a local file to upload or write
"""

from typing import Any, Dict, List, Optional

__all__ = [
    "BaiError",
    "InvalidSlotError",
    "InvalidSizeError",
    "ArithmeticOverflowError",
    "InvalidSnapshotError",
    "InvalidConfigError",
    "InvalidValueError",
    "ClientError",
    "ApiError",
    "NotFoundError",
    "AuthError",
    "GraphQLError",
    "UnreachableError",
    "ConfigError",
    "InvalidInputError",
    "RejectedError",
    "ProtocolError",
    "LocalFileError",
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


class ClientError(BaiError):
    """Base class of the client's errors. The message is the Rust client's; ``hint`` says what
    to do about common causes (or is ``None``)."""

    hint: Optional[str] = None


class ApiError(ClientError):
    """The manager answered with an error status.

    ``status`` is the HTTP status, ``problem`` the server's problem-details body as a dict
    (``{"type": …, "title": …, "msg": …}``), ``problem_type`` its type URL, ``title`` its title,
    ``method`` and ``path`` the request.
    """

    status: Optional[int] = None
    problem: Optional[Dict[str, Any]] = None
    problem_type: Optional[str] = None
    title: Optional[str] = None
    method: Optional[str] = None
    path: Optional[str] = None


class NotFoundError(ApiError):
    """404: no such session, folder, file or route."""


class AuthError(ApiError):
    """401: the keypair was refused (wrong keys, or this machine's clock is off by more than 15 minutes)."""


class GraphQLError(ClientError):
    """A GraphQL request returned errors: ``errors`` is a list of ``{"message", "path"}``
    (e.g. a regular user asking for an admin-only field)."""

    errors: Optional[List[Dict[str, Any]]] = None


class UnreachableError(ClientError, ConnectionError):
    """The manager could not be reached (connection refused, DNS, TLS, timeout); ``url`` says where."""

    url: Optional[str] = None


class ConfigError(ClientError, ValueError):
    """Client settings that cannot be used; ``field`` names the setting (e.g. ``BACKEND_ENDPOINT``)."""

    field: Optional[str] = None


class InvalidInputError(ClientError, ValueError):
    """An argument the client refused before sending anything; ``field`` names it."""

    field: Optional[str] = None


class RejectedError(ClientError):
    """The server understood an operation and refused it (a mutation answering ``ok: false``);
    ``operation`` names it, ``reason`` is the server's."""

    operation: Optional[str] = None


class ProtocolError(ClientError):
    """The server answered something the client does not understand; ``what`` names the call."""

    what: Optional[str] = None


class LocalFileError(ClientError, OSError):
    """A local file could not be read or written; ``path`` (and ``filename``) names it."""

    path: Optional[str] = None
