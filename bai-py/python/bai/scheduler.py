"""The bai scheduler: a snapshot of agents and pending sessions in, a plan out.

``plan(snapshot, config=None, now=None)`` places every pending session (all kernels or none) or
says why it waits; ``explain`` gives one sentence per session; ``simulate`` steps the scheduler
over simulated time. The GIL is released while the Rust scheduler runs, so other Python threads
keep going.

A snapshot is a :class:`Snapshot`, or anything its constructor accepts: a dict, a dataclass, or
keyword arguments, nested freely (dicts, dataclasses, lists, tuples). The keys are those of the
Rust crate's ``bai_scheduler::Snapshot`` (its JSON form); a key whose value is ``None`` counts as
absent, so its default applies:

``agents`` (list, required), each:
    ``id`` (str), ``scaling_group`` (str), ``architecture`` (str, e.g. ``"x86_64"``),
    ``status`` (``"ALIVE"``, ``"LOST"``, …; case-insensitive), ``available_slots`` (slots),
    ``occupied_slots`` (slots, default empty), ``schedulable`` (bool, default True).
``pending`` (list, default empty), each:
    ``id`` (UUID or str), ``access_key`` (str), ``user`` (str), ``group`` (str), ``domain``
    (str), ``created_at`` (datetime or RFC 3339 str; a naive datetime is UTC), ``scaling_group``,
    ``architecture``, ``kernels`` (list of ``{"id": UUID, "requested_slots": slots}``, the first
    being the main kernel); optional: ``name`` (str), ``session_type`` (``"interactive"``,
    ``"batch"``, ``"inference"``, ``"system"``), ``priority`` (int, default 10), ``cluster_mode``
    (``"single-node"`` or ``"multi-node"``), ``designated_agents`` (list of agent ids),
    ``depends_on`` (list of session ids), ``starts_at`` (datetime), ``retries`` (int).
``policies`` (optional): ``keypairs`` ``{access key: {"limit": {"total_resource_slots": slots,
    "default_for_unspecified": "UNLIMITED" | "LIMITED"}, "max_concurrent_sessions": int,
    "max_concurrent_sftp_sessions": int, "max_pending_session_count": int,
    "max_pending_session_resource_slots": slots}}``, and ``users``, ``groups``, ``domains``
    ``{name: {"total_resource_slots": slots, "default_for_unspecified": …}}``.
``usage`` (optional): ``keypairs`` ``{access key: {"occupied": slots, "running_sessions": int,
    "running_sftp_sessions": int}}``, and ``users``, ``groups``, ``domains`` ``{name: slots}``.
``dependencies`` (optional): ``{session id: {"name": str, "status": str, "succeeded": bool}}``.
``roundrobin_next`` (optional): a plan's ``roundrobin_next``, to continue round-robin selection.

"slots" is a :class:`bai.ResourceSlot` or a mapping such as ``{"cpu": 4, "mem": "16g",
"cuda.shares": "0.5"}``, read as the ``ResourceSlot`` constructor reads it. Errors raise
:class:`bai.InvalidSnapshotError` naming the path, e.g. ``pending[2].kernels[0]: missing field
`requested_slots```.

The dataclasses :class:`Agent`, :class:`Kernel`, :class:`Session` and :class:`Arrival` below are
typed shortcuts for those dicts, with convenient defaults (scaling group ``"default"``,
architecture ``"x86_64"``, random ids, ``created_at`` now); any dataclass with the same field
names works as well.
"""

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, List, Mapping, Optional, Sequence, Union

from bai._internal import (
    Blocked,
    BlockReason,
    Cancellation,
    Config,
    KernelPlacement,
    KeyReport,
    Placement,
    Plan,
    PredicateFailure,
    SimulationReport,
    SlotShortage,
    Snapshot,
    explain,
    plan,
    simulate,
)

__all__ = [
    "Agent",
    "Arrival",
    "Blocked",
    "BlockReason",
    "Cancellation",
    "Config",
    "Kernel",
    "KernelPlacement",
    "KeyReport",
    "Placement",
    "Plan",
    "PredicateFailure",
    "Session",
    "SimulationReport",
    "SlotShortage",
    "Snapshot",
    "explain",
    "plan",
    "simulate",
]

Slots = Union[Mapping[str, Any], Any]


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


@dataclass
class Agent:
    """One agent (compute node) of a snapshot."""

    id: str
    available_slots: Slots
    scaling_group: str = "default"
    architecture: str = "x86_64"
    status: str = "ALIVE"
    schedulable: bool = True
    occupied_slots: Optional[Slots] = None


@dataclass
class Kernel:
    """One kernel of a pending session."""

    requested_slots: Slots
    id: uuid.UUID = field(default_factory=uuid.uuid4)


@dataclass
class Session:
    """A pending session. ``kernels`` holds :class:`Kernel` objects (or dicts of the same keys)."""

    access_key: str
    kernels: Sequence[Any]
    id: uuid.UUID = field(default_factory=uuid.uuid4)
    name: Optional[str] = None
    user: str = ""
    group: str = "default"
    domain: str = "default"
    created_at: datetime = field(default_factory=_utcnow)
    scaling_group: str = "default"
    architecture: str = "x86_64"
    session_type: Optional[str] = None
    priority: Optional[int] = None
    cluster_mode: Optional[str] = None
    designated_agents: Optional[List[str]] = None
    depends_on: Optional[List[Any]] = None
    starts_at: Optional[datetime] = None
    retries: Optional[int] = None

    @classmethod
    def with_slots(cls, access_key: str, requested_slots: Slots, kernels: int = 1, **fields: Any) -> "Session":
        """A session of ``kernels`` identical kernels (multi-node when more than one)."""
        if kernels > 1:
            fields.setdefault("cluster_mode", "multi-node")
        return cls(access_key=access_key, kernels=[Kernel(requested_slots) for _ in range(kernels)], **fields)


@dataclass
class Arrival:
    """A session that arrives at ``at`` and runs for ``duration`` once placed (for :func:`simulate`)."""

    at: datetime
    duration: Union[timedelta, float]
    session: Any
