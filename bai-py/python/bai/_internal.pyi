"""Type stubs of the native module ``bai._internal`` (private: import from ``bai`` and ``bai.scheduler``)."""

from datetime import datetime, timedelta
from decimal import Decimal
import os
from typing import (
    Any,
    AsyncIterator,
    Awaitable,
    Callable,
    Dict,
    Generator,
    Iterable,
    Iterator,
    List,
    Mapping,
    Optional,
    Tuple,
    Union,
    final,
)
from uuid import UUID

__version__: str

Amount = Union[int, float, str, Decimal, "BinarySize"]
SlotsLike = Union["ResourceSlot", Mapping[str, Amount]]
SessionIdLike = Union[str, UUID]
TimeLike = Union[datetime, str]
DurationLike = Union[timedelta, int, float]

@final
class ResourceSlot:
    """Exact resource amounts by slot name (``cpu``, ``mem``, ``cuda.shares``, …).

    A missing slot is zero in every operation: ``ResourceSlot({"cpu": 1}) == {"cpu": 1, "mem": 0}``.
    Comparisons are a partial order: ``a <= b`` means ``a`` fits within ``b`` (every slot at most
    ``b``'s); when each has more of some slot, every ordering is False. Values may be ``int``,
    ``float`` (its shortest repr, so 0.1 is exactly 0.1), ``str``, ``Decimal`` or ``BinarySize``;
    a slot whose name contains ``mem`` also takes sizes such as ``"4g"``. Raises
    ``bai.InvalidSlotError`` for a bad name or value.
    """

    def __new__(cls, slots: Optional[SlotsLike] = None, /) -> ResourceSlot: ...
    @staticmethod
    def from_user_input(request: Mapping[str, Amount], known: Optional[Mapping[str, str]] = None) -> ResourceSlot:
        """The API's reading of a user's request: counts rounded to 3 decimals, zeros dropped,
        negatives refused; ``known`` (``{"cuda.shares": "count", …}`` added to cpu/mem) refuses
        unknown slots and fills in the known ones with zero."""
    @staticmethod
    def from_json(text: str) -> ResourceSlot: ...
    def to_json(self) -> str:
        """``{"cpu":"2","mem":"4294967296"}``: values as exponent-free decimal strings."""
    def to_dict(self) -> Dict[str, Decimal]: ...
    def amount(self, name: str) -> Decimal:
        """The amount of a slot; zero when absent."""
    def get(self, name: str, default: Any = None) -> Any: ...
    def keys(self) -> List[str]: ...
    def values(self) -> List[Decimal]: ...
    def items(self) -> List[Tuple[str, Decimal]]: ...
    def fits_in(self, capacity: SlotsLike) -> bool: ...
    def shortfall(self, capacity: SlotsLike) -> ResourceSlot:
        """The slots where this exceeds ``capacity``, with the amount missing in each."""
    def is_zero(self) -> bool: ...
    def has_negative(self) -> bool: ...
    def without_zeros(self) -> ResourceSlot: ...
    def humanize(self, known: Optional[Mapping[str, str]] = None) -> str:
        """``cpu=2 mem=4g``."""
    def __getitem__(self, name: str) -> Decimal: ...
    def __contains__(self, name: object) -> bool: ...
    def __iter__(self) -> Iterator[str]: ...
    def __len__(self) -> int: ...
    def __bool__(self) -> bool: ...
    def __add__(self, other: SlotsLike) -> ResourceSlot: ...
    def __radd__(self, other: Union[SlotsLike, int]) -> ResourceSlot: ...
    def __sub__(self, other: SlotsLike) -> ResourceSlot: ...
    def __rsub__(self, other: SlotsLike) -> ResourceSlot: ...
    def __mul__(self, factor: Union[int, float, Decimal]) -> ResourceSlot: ...
    def __rmul__(self, factor: Union[int, float, Decimal]) -> ResourceSlot: ...
    def __neg__(self) -> ResourceSlot: ...
    def __pos__(self) -> ResourceSlot: ...
    def __eq__(self, other: object) -> bool: ...
    def __ne__(self, other: object) -> bool: ...
    def __lt__(self, other: SlotsLike) -> bool: ...
    def __le__(self, other: SlotsLike) -> bool: ...
    def __gt__(self, other: SlotsLike) -> bool: ...
    def __ge__(self, other: SlotsLike) -> bool: ...
    def __hash__(self) -> int: ...

@final
class BinarySize:
    """A size in bytes, parsed and printed in powers of 1024: ``"4g"``, ``"1.5 GiB"``, ``512 MiB``.

    Compares and hashes like the int of its bytes. Raises ``bai.InvalidSizeError`` for input that
    does not parse and ``bai.ArithmeticOverflowError`` for a result below 0 or above 16 EiB.
    """

    def __new__(cls, value: Union[int, str, BinarySize]) -> BinarySize: ...
    @staticmethod
    def parse(text: str) -> BinarySize: ...
    @staticmethod
    def from_json(text: str) -> BinarySize: ...
    def to_json(self) -> str: ...
    @property
    def bytes(self) -> int: ...
    def short(self) -> str:
        """``512m``, ``1.5g``: two decimals at most."""
    def in_unit(self, unit: str) -> str:
        """The size in a fixed unit (``k``, ``m``, ``g``, ``t``, ``p``, ``e``, or ``" "`` for bytes)."""
    def __int__(self) -> int: ...
    def __index__(self) -> int: ...
    def __bool__(self) -> bool: ...
    def __add__(self, other: Union[BinarySize, int]) -> BinarySize: ...
    def __radd__(self, other: Union[BinarySize, int]) -> BinarySize: ...
    def __sub__(self, other: Union[BinarySize, int]) -> BinarySize: ...
    def __rsub__(self, other: Union[BinarySize, int]) -> BinarySize: ...
    def __mul__(self, factor: int) -> BinarySize: ...
    def __rmul__(self, factor: int) -> BinarySize: ...
    def __eq__(self, other: object) -> bool: ...
    def __lt__(self, other: Union[BinarySize, int]) -> bool: ...
    def __le__(self, other: Union[BinarySize, int]) -> bool: ...
    def __gt__(self, other: Union[BinarySize, int]) -> bool: ...
    def __ge__(self, other: Union[BinarySize, int]) -> bool: ...
    def __hash__(self) -> int: ...

@final
class Snapshot:
    """The scheduler's input, converted once (see ``bai.scheduler`` for the keys)."""

    def __new__(cls, data: Any = None, /, **fields: Any) -> Snapshot: ...
    @staticmethod
    def from_json(text: str) -> Snapshot: ...
    def to_json(self) -> str: ...
    def to_dict(self) -> Dict[str, Any]: ...
    @property
    def agent_count(self) -> int: ...
    @property
    def pending_count(self) -> int: ...

@final
class Config:
    """Queue policy (``fifo``, ``lifo``, ``drf``) and agent selector (``dispersed``,
    ``concentrated``, ``roundrobin``, ``legacy``) by default and per scaling group (``groups``:
    ``{name: {"queue", "selector", "queue_options", "pending_timeout", "allowed_session_types"}}``).
    ``queue_options`` are the original's ``scheduler_opts``, e.g. ``{"num_retries_to_skip": 5}``;
    ``all_bands`` tries every priority band in one plan instead of only the highest."""

    def __new__(
        cls,
        *,
        queue: str = "fifo",
        selector: str = "dispersed",
        queue_options: Optional[Mapping[str, Any]] = None,
        pending_timeout: Optional[DurationLike] = None,
        allowed_session_types: Optional[Iterable[str]] = None,
        groups: Optional[Mapping[str, Mapping[str, Any]]] = None,
        resource_priority: Optional[List[str]] = None,
        all_bands: bool = False,
    ) -> Config: ...
    @property
    def queue(self) -> str: ...
    @property
    def selector(self) -> str: ...
    @property
    def all_bands(self) -> bool: ...
    @property
    def resource_priority(self) -> List[str]: ...
    @property
    def groups(self) -> List[str]: ...

@final
class KernelPlacement:
    @property
    def kernel_id(self) -> str: ...
    @property
    def agent_id(self) -> str: ...
    @property
    def slots(self) -> ResourceSlot: ...

@final
class Placement:
    @property
    def session_id(self) -> str: ...
    @property
    def scaling_group(self) -> str: ...
    @property
    def kernels(self) -> List[KernelPlacement]: ...
    @property
    def agent_ids(self) -> List[str]: ...
    def explain(self) -> str: ...

@final
class PredicateFailure:
    @property
    def name(self) -> str: ...
    @property
    def msg(self) -> str: ...
    @property
    def excess(self) -> Optional[ResourceSlot]: ...

@final
class SlotShortage:
    @property
    def slot(self) -> str: ...
    @property
    def requested(self) -> Decimal: ...
    @property
    def largest_free(self) -> Decimal: ...

@final
class BlockReason:
    @property
    def kind(self) -> str:
        """``lower_priority``, ``session_type_not_allowed``, ``invalid_request``,
        ``predicates_failed``, ``no_agents``, ``designated_agent_unavailable``, ``no_resources``
        or ``selector_declined``."""
    @property
    def message(self) -> str: ...
    @property
    def status_info(self) -> str: ...
    @property
    def counts_as_retry(self) -> bool: ...
    @property
    def details(self) -> Dict[str, Any]: ...
    @property
    def failed_predicates(self) -> List[PredicateFailure]: ...
    @property
    def passed_predicates(self) -> List[str]: ...
    @property
    def shortages(self) -> List[SlotShortage]: ...
    @property
    def requested(self) -> Optional[ResourceSlot]: ...
    @property
    def agents_considered(self) -> Optional[int]: ...

@final
class Blocked:
    @property
    def session_id(self) -> str: ...
    @property
    def scaling_group(self) -> str: ...
    @property
    def reason(self) -> BlockReason: ...
    def explain(self) -> str: ...

@final
class Cancellation:
    @property
    def session_id(self) -> str: ...
    @property
    def reason(self) -> str: ...
    def explain(self) -> str: ...

@final
class Plan:
    @property
    def placements(self) -> List[Placement]: ...
    @property
    def blocked(self) -> List[Blocked]: ...
    @property
    def cancellations(self) -> List[Cancellation]: ...
    @property
    def roundrobin_next(self) -> List[Dict[str, Any]]: ...
    @property
    def placement_count(self) -> int: ...
    @property
    def blocked_count(self) -> int: ...
    @property
    def cancellation_count(self) -> int: ...
    @property
    def assignments(self) -> Dict[str, List[str]]:
        """``{session id: [agent id of each kernel]}`` for every placed session."""
    def placement(self, session_id: SessionIdLike) -> Optional[Placement]: ...
    def reason(self, session_id: SessionIdLike) -> Optional[BlockReason]: ...
    def explain(self, session_id: SessionIdLike) -> Optional[str]: ...
    def explanations(self) -> Dict[str, str]: ...
    def to_json(self) -> str: ...
    def to_dict(self) -> Dict[str, Any]: ...

@final
class KeyReport:
    @property
    def submitted(self) -> int: ...
    @property
    def started(self) -> int: ...
    @property
    def cancelled(self) -> int: ...
    @property
    def mean_wait_secs(self) -> float: ...
    @property
    def max_wait_secs(self) -> float: ...
    @property
    def usage_share(self) -> float: ...

@final
class SimulationReport:
    @property
    def passes(self) -> int: ...
    @property
    def makespan_secs(self) -> float: ...
    @property
    def utilisation(self) -> Dict[str, float]: ...
    @property
    def keys(self) -> Dict[str, KeyReport]: ...
    @property
    def fairness(self) -> float: ...
    @property
    def still_waiting(self) -> int: ...
    def to_json(self) -> str: ...
    def to_dict(self) -> Dict[str, Any]: ...

def plan(
    snapshot: Union[Snapshot, Mapping[str, Any], Any],
    config: Union[Config, Mapping[str, Any], None] = None,
    now: Optional[TimeLike] = None,
) -> Plan:
    """One scheduling pass (the GIL is released while it runs). ``now`` defaults to the current time."""

def explain(
    snapshot: Union[Snapshot, Mapping[str, Any], Any],
    config: Union[Config, Mapping[str, Any], None] = None,
    now: Optional[TimeLike] = None,
) -> Dict[str, str]:
    """Plans and returns one sentence per pending session: ``{session id: sentence}``."""

def simulate(
    snapshot: Union[Snapshot, Mapping[str, Any], Any],
    arrivals: Optional[Iterable[Any]] = None,
    config: Union[Config, Mapping[str, Any], None] = None,
    *,
    interval: Optional[DurationLike] = None,
    horizon: Optional[DurationLike] = None,
) -> SimulationReport:
    """Runs the scheduler every ``interval`` (default 10 s) until every session has run or
    ``horizon`` (default 7 days) has passed. ``arrivals``: dicts or dataclasses with ``at``
    (datetime), ``duration`` (timedelta or seconds) and ``session`` (a pending session; its
    ``created_at`` may be left out). The GIL is released while it runs."""

# ---------------------------------------------------------------------------------------------
# The client

PathLike = Union[str, "os.PathLike[str]"]
SessionRef = Union[str, UUID]
StatusLike = Union[str, Iterable[str], None]
Progress = Callable[[int, int], Any]
ExecItem = Tuple[str, Any]

@final
class Execution(Iterator[ExecItem]):
    """A running execution (``Client.execute``): iterate for ``(kind, data)`` items —
    ``("stdout", text)``, ``("stderr", text)``, ``("waiting-input", {"is_password": bool})``
    (answer with ``send_input``), other console records as ``(kind, data)``, and last
    ``("finished", exit_code)``. A context manager closing the connection (which interrupts the
    code if it still runs)."""

    def __iter__(self) -> Execution: ...
    def __next__(self) -> ExecItem: ...
    def send_input(self, line: str) -> None:
        """Answers ``("waiting-input", …)``; call it after reading that item."""
    def close(self) -> None: ...
    @property
    def exit_code(self) -> Optional[int]:
        """The exit code once ``("finished", …)`` has been read, else None."""
    def __enter__(self) -> Execution: ...
    def __exit__(self, *args: Any) -> bool: ...

@final
class AsyncExecution(AsyncIterator[ExecItem], Awaitable["AsyncExecution"]):
    """``AsyncClient.execute``: ``async for kind, data in client.execute(...)`` (connects on
    the first item), or ``run = await client.execute(...)`` to connect first; also an async
    context manager."""

    def __aiter__(self) -> AsyncExecution: ...
    async def __anext__(self) -> ExecItem: ...
    def __await__(self) -> Generator[Any, None, AsyncExecution]: ...
    async def send_input(self, line: str) -> None: ...
    async def close(self) -> None: ...
    @property
    def exit_code(self) -> Optional[int]: ...
    async def __aenter__(self) -> AsyncExecution: ...
    async def __aexit__(self, *args: Any) -> bool: ...

@final
class EventStream(Iterator[Dict[str, Any]]):
    """A session's events (``Client.events``) as dicts — ``name`` (``session_started``,
    ``kernel_terminated``, …), ``session_id``, ``session_name``, ``kernel_id``, ``reason``,
    ``exit_code``, ``data`` (the whole payload) — in order; the iteration ends when the server
    closes the stream, after the session's final event. A context manager."""

    def __iter__(self) -> EventStream: ...
    def __next__(self) -> Dict[str, Any]: ...
    def close(self) -> None: ...
    def __enter__(self) -> EventStream: ...
    def __exit__(self, *args: Any) -> bool: ...

@final
class AsyncEventStream(AsyncIterator[Dict[str, Any]], Awaitable["AsyncEventStream"]):
    """``AsyncClient.events``: ``async for event in client.events(...)``."""

    def __aiter__(self) -> AsyncEventStream: ...
    async def __anext__(self) -> Dict[str, Any]: ...
    def __await__(self) -> Generator[Any, None, AsyncEventStream]: ...
    async def close(self) -> None: ...

@final
class Client:
    """A client of a Backend.AI manager (a bai manager or an original one).

    Arguments left out come from the official client's environment (``BACKEND_ENDPOINT``,
    ``BACKEND_ACCESS_KEY``, ``BACKEND_SECRET_KEY``, ``BACKEND_DOMAIN``, ``BACKEND_GROUP``,
    ``BACKEND_MAX_RETRIES``, …) and ``~/.config/bai/config.toml``. Every call blocks with the
    GIL released (other threads run; Ctrl-C interrupts it) on one tokio runtime shared by all
    clients, and returns plain Python objects (dicts keyed by the Rust SDK's field names,
    lists, str, int, None). Errors are ``bai.ClientError``s. Safe to share between threads.
    """

    def __init__(
        self,
        endpoint: Optional[str] = None,
        access_key: Optional[str] = None,
        secret_key: Optional[str] = None,
        *,
        domain: Optional[str] = None,
        group: Optional[str] = None,
        max_retries: Optional[int] = None,
    ) -> None: ...
    @property
    def endpoint(self) -> str: ...
    @property
    def access_key(self) -> str: ...
    @property
    def domain(self) -> str: ...
    @property
    def group(self) -> str: ...
    def execute(self, session: SessionRef, code: str) -> Execution:
        """Starts running ``code`` in a session (connecting now, so a missing session raises
        here) and returns the stream of its output."""
    def events(self, session: SessionRef, scope: str = "all") -> EventStream:
        """Follows a session's events (``scope``: ``"all"``, ``"session"`` or ``"kernel"``)."""
    def server_version(self) -> Dict[str, str]:
        """``{"version", "manager"}``: the API version and the manager's version (``GET /``)."""
    def graphql(self, query: str, variables: Optional[Mapping[str, Any]] = None) -> Dict[str, Any]:
        """Runs a GraphQL query or mutation and returns its ``data``; errors raise ``GraphQLError``."""

    # sessions
    def create_session(
        self,
        image: str,
        *,
        name: Optional[str] = None,
        session_type: str = "interactive",
        resources: Optional[Mapping[str, Any]] = None,
        resource_opts: Optional[Mapping[str, Any]] = None,
        environ: Optional[Mapping[str, str]] = None,
        mounts: Optional[List[str]] = None,
        mount_map: Optional[Mapping[str, str]] = None,
        scaling_group: Optional[str] = None,
        cluster_size: int = 1,
        startup_command: Optional[str] = None,
        bootstrap_script: Optional[str] = None,
        tag: Optional[str] = None,
        enqueue_only: bool = False,
        max_wait: int = 0,
        reuse: bool = True,
        owner_access_key: Optional[str] = None,
        group: Optional[str] = None,
        architecture: Optional[str] = None,
        preopen_ports: Optional[List[int]] = None,
        on_event: Optional[Callable[[Dict[str, Any]], Any]] = None,
    ) -> Dict[str, Any]:
        """Creates a session and (unless ``enqueue_only``) waits until it runs (``max_wait``
        seconds at most, 0: as long as it takes). Returns ``{"session_id", "session_name",
        "status", "service_ports", "created"}``; ``status`` is ``RUNNING``, ``PENDING``,
        ``TIMEOUT`` or a terminal status. ``resources``: ``{"cpu": 1, "mem": "1g"}`` (a bare
        number for ``mem`` is MiB; a ``BinarySize`` is exact). ``reuse``: an existing session of
        the same name and image is returned (``created`` False). ``on_event(event)`` is called
        with each event while the session starts."""
    def list_sessions(
        self, status: StatusLike = None, *, access_key: Optional[str] = None, limit: int = 100, offset: int = 0
    ) -> Dict[str, Any]:
        """A page of sessions, newest first: ``{"items": [...], "total_count": n}``. ``status``:
        ``"active"`` (default), ``"running"``, ``"dead"``, ``"all"``, a status name or a list."""
    def all_sessions(self, status: StatusLike = None, *, access_key: Optional[str] = None) -> List[Dict[str, Any]]:
        """Every session matching ``status`` (all pages)."""
    def session_info(self, session: SessionRef) -> Dict[str, Any]:
        """A session's details and kernels (``containers``), by name or id."""
    def destroy_session(self, session: SessionRef, *, forced: bool = False) -> Optional[Dict[str, Any]]:
        """Destroys a session; returns its last statistics when the server reports them."""
    def restart_session(self, session: SessionRef) -> None: ...
    def session_logs(self, session: SessionRef) -> str:
        """The main kernel's console log."""
    def apps(self, session: SessionRef) -> List[Dict[str, Any]]:
        """The apps (services) the session offers: name, protocol, ports, url_template, ..."""
    def app_link(self, session: SessionRef, app: str) -> Dict[str, str]:
        """A browser link to an HTTP app of the session: ``{"url", "expires_at"}``."""
    def session_files(self, session: SessionRef, path: str = ".") -> List[Dict[str, Any]]:
        """The files of a directory of the session (relative to ``/home/work``)."""
    def upload_to_session(
        self, session: SessionRef, files: Union[PathLike, Iterable[Union[PathLike, Tuple[PathLike, str]]]]
    ) -> None:
        """Uploads local files into ``/home/work``: paths (kept under their base names) or
        ``(local path, name in the session)`` pairs."""
    def download_from_session(
        self, session: SessionRef, files: Union[str, Iterable[str]], dest: Optional[PathLike] = None
    ) -> List[str]:
        """Downloads files or directories of the session into ``dest`` (default: the current
        directory); returns the local paths written."""
    def run_code(self, session: SessionRef, code: str) -> Dict[str, Any]:
        """Runs code to the end: ``{"stdout", "stderr", "exit_code"}`` (for code that needs no input)."""

    # virtual folders
    def create_vfolder(
        self,
        name: str,
        *,
        host: Optional[str] = None,
        group: Optional[str] = None,
        usage_mode: Optional[str] = None,
        permission: Optional[str] = None,
        quota: Optional[Union[str, int, BinarySize]] = None,
        cloneable: bool = False,
    ) -> Dict[str, Any]: ...
    def list_vfolders(self) -> List[Dict[str, Any]]: ...
    def vfolder_info(self, name: str) -> Dict[str, Any]: ...
    def delete_vfolder(self, name: str) -> None: ...
    def rename_vfolder(self, name: str, new_name: str) -> None: ...
    def vfolder_hosts(self) -> Dict[str, Any]:
        """``{"default", "allowed"}``: the storage hosts the requester may use."""
    def vfolder_mkdir(self, name: str, path: str, *, parents: bool = False) -> None: ...
    def vfolder_files(self, name: str, path: str = ".") -> List[Dict[str, Any]]: ...
    def vfolder_delete_files(self, name: str, files: Union[str, Iterable[str]], *, recursive: bool = False) -> None: ...
    def vfolder_upload(
        self, name: str, local: PathLike, remote_path: Optional[str] = None, *, progress: Optional[Progress] = None
    ) -> int:
        """Uploads a file (to its base name when ``remote_path`` is None); returns the bytes sent.
        ``progress(done, total)`` is called (with the GIL) after each chunk; an exception it
        raises is raised by the call when it ends."""
    def vfolder_download(
        self,
        name: str,
        remote_path: str,
        local: Optional[PathLike] = None,
        *,
        overwrite: bool = False,
        progress: Optional[Progress] = None,
    ) -> int:
        """Downloads a file (to its base name in the current directory when ``local`` is None;
        an existing file is ``InvalidInputError`` unless ``overwrite``); returns the bytes
        received. The file appears only when complete."""

    # administration (most need an admin or superadmin keypair; a user's call raises GraphQLError)
    def list_agents(
        self, status: Optional[str] = None, scaling_group: Optional[str] = None, *, limit: int = 100, offset: int = 0
    ) -> Dict[str, Any]:
        """A page of agents (``ALIVE`` ones when ``status`` is None)."""
    def own_keypair(self) -> Dict[str, Any]: ...
    def list_keypairs(
        self, email: Optional[str] = None, is_active: Optional[bool] = None, *, limit: int = 100, offset: int = 0
    ) -> Dict[str, Any]: ...
    def create_keypair(
        self, email: str, *, resource_policy: str = "default", is_admin: bool = False, rate_limit: int = 5000
    ) -> Dict[str, str]:
        """``{"access_key", "secret_key"}`` of a new keypair for the user ``email``."""
    def set_keypair_active(self, access_key: str, active: bool) -> None: ...
    def delete_keypair(self, access_key: str) -> None:
        """Deletes a keypair; ``RejectedError`` when the server refuses."""
    def list_users(self, status: Optional[str] = None, *, limit: int = 100, offset: int = 0) -> Dict[str, Any]: ...
    def create_user(
        self,
        email: str,
        password: str,
        *,
        domain: str = "default",
        role: str = "user",
        username: Optional[str] = None,
        full_name: str = "",
    ) -> Dict[str, Any]: ...
    def list_domains(self) -> List[Dict[str, Any]]: ...
    def create_domain(self, name: str, description: str = "") -> None: ...
    def list_groups(self, domain: Optional[str] = None) -> List[Dict[str, Any]]: ...
    def create_group(self, name: str, *, domain: str = "default", description: str = "") -> str:
        """Creates a project and returns its id."""
    def list_images(self) -> List[Dict[str, Any]]: ...
    def list_scaling_groups(self) -> List[Dict[str, Any]]: ...
    def list_resource_policies(self) -> List[Dict[str, Any]]: ...
    def list_presets(self) -> List[Dict[str, Any]]: ...
    def check_presets(self, scaling_group: Optional[str] = None) -> Dict[str, Any]: ...

@final
class AsyncClient:
    """``Client`` with coroutines: the same arguments, methods and results, awaited on a
    running asyncio loop (``await client.create_session(...)``; ``asyncio.gather`` runs calls
    concurrently). ``execute`` and ``events`` return async iterators directly."""

    def __init__(
        self,
        endpoint: Optional[str] = None,
        access_key: Optional[str] = None,
        secret_key: Optional[str] = None,
        *,
        domain: Optional[str] = None,
        group: Optional[str] = None,
        max_retries: Optional[int] = None,
    ) -> None: ...
    @property
    def endpoint(self) -> str: ...
    @property
    def access_key(self) -> str: ...
    @property
    def domain(self) -> str: ...
    @property
    def group(self) -> str: ...
    def execute(self, session: SessionRef, code: str) -> AsyncExecution: ...
    def events(self, session: SessionRef, scope: str = "all") -> AsyncEventStream: ...
    async def server_version(self) -> Dict[str, str]:
        """``{"version", "manager"}``: the API version and the manager's version (``GET /``)."""
    async def graphql(self, query: str, variables: Optional[Mapping[str, Any]] = None) -> Dict[str, Any]:
        """Runs a GraphQL query or mutation and returns its ``data``; errors raise ``GraphQLError``."""

    # sessions
    async def create_session(
        self,
        image: str,
        *,
        name: Optional[str] = None,
        session_type: str = "interactive",
        resources: Optional[Mapping[str, Any]] = None,
        resource_opts: Optional[Mapping[str, Any]] = None,
        environ: Optional[Mapping[str, str]] = None,
        mounts: Optional[List[str]] = None,
        mount_map: Optional[Mapping[str, str]] = None,
        scaling_group: Optional[str] = None,
        cluster_size: int = 1,
        startup_command: Optional[str] = None,
        bootstrap_script: Optional[str] = None,
        tag: Optional[str] = None,
        enqueue_only: bool = False,
        max_wait: int = 0,
        reuse: bool = True,
        owner_access_key: Optional[str] = None,
        group: Optional[str] = None,
        architecture: Optional[str] = None,
        preopen_ports: Optional[List[int]] = None,
        on_event: Optional[Callable[[Dict[str, Any]], Any]] = None,
    ) -> Dict[str, Any]:
        """Creates a session and (unless ``enqueue_only``) waits until it runs (``max_wait``
        seconds at most, 0: as long as it takes). Returns ``{"session_id", "session_name",
        "status", "service_ports", "created"}``; ``status`` is ``RUNNING``, ``PENDING``,
        ``TIMEOUT`` or a terminal status. ``resources``: ``{"cpu": 1, "mem": "1g"}`` (a bare
        number for ``mem`` is MiB; a ``BinarySize`` is exact). ``reuse``: an existing session of
        the same name and image is returned (``created`` False). ``on_event(event)`` is called
        with each event while the session starts."""
    async def list_sessions(
        self, status: StatusLike = None, *, access_key: Optional[str] = None, limit: int = 100, offset: int = 0
    ) -> Dict[str, Any]:
        """A page of sessions, newest first: ``{"items": [...], "total_count": n}``. ``status``:
        ``"active"`` (default), ``"running"``, ``"dead"``, ``"all"``, a status name or a list."""
    async def all_sessions(self, status: StatusLike = None, *, access_key: Optional[str] = None) -> List[Dict[str, Any]]:
        """Every session matching ``status`` (all pages)."""
    async def session_info(self, session: SessionRef) -> Dict[str, Any]:
        """A session's details and kernels (``containers``), by name or id."""
    async def destroy_session(self, session: SessionRef, *, forced: bool = False) -> Optional[Dict[str, Any]]:
        """Destroys a session; returns its last statistics when the server reports them."""
    async def restart_session(self, session: SessionRef) -> None: ...
    async def session_logs(self, session: SessionRef) -> str:
        """The main kernel's console log."""
    async def apps(self, session: SessionRef) -> List[Dict[str, Any]]:
        """The apps (services) the session offers: name, protocol, ports, url_template, ..."""
    async def app_link(self, session: SessionRef, app: str) -> Dict[str, str]:
        """A browser link to an HTTP app of the session: ``{"url", "expires_at"}``."""
    async def session_files(self, session: SessionRef, path: str = ".") -> List[Dict[str, Any]]:
        """The files of a directory of the session (relative to ``/home/work``)."""
    async def upload_to_session(
        self, session: SessionRef, files: Union[PathLike, Iterable[Union[PathLike, Tuple[PathLike, str]]]]
    ) -> None:
        """Uploads local files into ``/home/work``: paths (kept under their base names) or
        ``(local path, name in the session)`` pairs."""
    async def download_from_session(
        self, session: SessionRef, files: Union[str, Iterable[str]], dest: Optional[PathLike] = None
    ) -> List[str]:
        """Downloads files or directories of the session into ``dest`` (default: the current
        directory); returns the local paths written."""
    async def run_code(self, session: SessionRef, code: str) -> Dict[str, Any]:
        """Runs code to the end: ``{"stdout", "stderr", "exit_code"}`` (for code that needs no input)."""

    # virtual folders
    async def create_vfolder(
        self,
        name: str,
        *,
        host: Optional[str] = None,
        group: Optional[str] = None,
        usage_mode: Optional[str] = None,
        permission: Optional[str] = None,
        quota: Optional[Union[str, int, BinarySize]] = None,
        cloneable: bool = False,
    ) -> Dict[str, Any]: ...
    async def list_vfolders(self) -> List[Dict[str, Any]]: ...
    async def vfolder_info(self, name: str) -> Dict[str, Any]: ...
    async def delete_vfolder(self, name: str) -> None: ...
    async def rename_vfolder(self, name: str, new_name: str) -> None: ...
    async def vfolder_hosts(self) -> Dict[str, Any]:
        """``{"default", "allowed"}``: the storage hosts the requester may use."""
    async def vfolder_mkdir(self, name: str, path: str, *, parents: bool = False) -> None: ...
    async def vfolder_files(self, name: str, path: str = ".") -> List[Dict[str, Any]]: ...
    async def vfolder_delete_files(self, name: str, files: Union[str, Iterable[str]], *, recursive: bool = False) -> None: ...
    async def vfolder_upload(
        self, name: str, local: PathLike, remote_path: Optional[str] = None, *, progress: Optional[Progress] = None
    ) -> int:
        """Uploads a file (to its base name when ``remote_path`` is None); returns the bytes sent.
        ``progress(done, total)`` is called (with the GIL) after each chunk; an exception it
        raises is raised by the call when it ends."""
    async def vfolder_download(
        self,
        name: str,
        remote_path: str,
        local: Optional[PathLike] = None,
        *,
        overwrite: bool = False,
        progress: Optional[Progress] = None,
    ) -> int:
        """Downloads a file (to its base name in the current directory when ``local`` is None;
        an existing file is ``InvalidInputError`` unless ``overwrite``); returns the bytes
        received. The file appears only when complete."""

    # administration (most need an admin or superadmin keypair; a user's call raises GraphQLError)
    async def list_agents(
        self, status: Optional[str] = None, scaling_group: Optional[str] = None, *, limit: int = 100, offset: int = 0
    ) -> Dict[str, Any]:
        """A page of agents (``ALIVE`` ones when ``status`` is None)."""
    async def own_keypair(self) -> Dict[str, Any]: ...
    async def list_keypairs(
        self, email: Optional[str] = None, is_active: Optional[bool] = None, *, limit: int = 100, offset: int = 0
    ) -> Dict[str, Any]: ...
    async def create_keypair(
        self, email: str, *, resource_policy: str = "default", is_admin: bool = False, rate_limit: int = 5000
    ) -> Dict[str, str]:
        """``{"access_key", "secret_key"}`` of a new keypair for the user ``email``."""
    async def set_keypair_active(self, access_key: str, active: bool) -> None: ...
    async def delete_keypair(self, access_key: str) -> None:
        """Deletes a keypair; ``RejectedError`` when the server refuses."""
    async def list_users(self, status: Optional[str] = None, *, limit: int = 100, offset: int = 0) -> Dict[str, Any]: ...
    async def create_user(
        self,
        email: str,
        password: str,
        *,
        domain: str = "default",
        role: str = "user",
        username: Optional[str] = None,
        full_name: str = "",
    ) -> Dict[str, Any]: ...
    async def list_domains(self) -> List[Dict[str, Any]]: ...
    async def create_domain(self, name: str, description: str = "") -> None: ...
    async def list_groups(self, domain: Optional[str] = None) -> List[Dict[str, Any]]: ...
    async def create_group(self, name: str, *, domain: str = "default", description: str = "") -> str:
        """Creates a project and returns its id."""
    async def list_images(self) -> List[Dict[str, Any]]: ...
    async def list_scaling_groups(self) -> List[Dict[str, Any]]: ...
    async def list_resource_policies(self) -> List[Dict[str, Any]]: ...
    async def list_presets(self) -> List[Dict[str, Any]]: ...
    async def check_presets(self, scaling_group: Optional[str] = None) -> Dict[str, Any]: ...
