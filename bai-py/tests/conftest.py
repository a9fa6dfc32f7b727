"""Fixtures for the client tests: a real manager, started once per test run.

The manager is the ``bai-manager`` binary (``BAI_MANAGER_BIN``, else ``bai-manager`` on the
PATH, else the workspace's debug build) in its all-in-one mode: SQLite, the in-process bus and an
embedded agent whose kernels are local processes (image ``host`` runs Python code on this
machine), loaded with the example fixture's keypairs. When the binary cannot be found, the client
tests are skipped — or fail, when ``BAI_REQUIRE_SERVICES=1`` (as ``scripts/test`` sets it).
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

import bai

ROOT = Path(__file__).resolve().parents[2]
ADMIN = ("AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")
USER = ("AKIANABBDUSEREXAMPLE", "C8qnIo29EZvXkPK_MXcuAakYTy4NYrxwmCEyNPlf")
STORAGE_SECRET = "pytest-storage-secret"


def _manager_binary():
    explicit = os.environ.get("BAI_MANAGER_BIN")
    if explicit:
        return explicit if os.access(explicit, os.X_OK) else None
    found = shutil.which("bai-manager")
    if found:
        return found
    target = Path(os.environ.get("CARGO_TARGET_DIR") or ROOT / "target")
    candidate = target / "debug" / "bai-manager"
    return str(candidate) if os.access(candidate, os.X_OK) else None


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _kill_kernels(process_root: Path):
    """What ProcessRuntime::kill_all does: SIGKILL each kernel's process group."""
    for record in process_root.glob("*/record.json"):
        try:
            pid = json.loads(record.read_text()).get("pid")
        except (OSError, ValueError):
            continue
        if isinstance(pid, int) and pid > 1:
            try:
                os.killpg(pid, signal.SIGKILL)
            except OSError:
                pass


def _wait_until(what, check, timeout, log: Path, process):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"bai-manager exited with {process.returncode} before {what}:\n{log.read_text()[-3000:]}")
        try:
            if check():
                return
        except Exception as e:  # not up yet
            last = e
        time.sleep(0.2)
    pytest.fail(f"timed out waiting for {what} ({last!r}):\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="session")
def manager():
    """Starts an all-in-one manager on a free port and yields its endpoint."""
    binary = _manager_binary()
    if binary is None:
        reason = (
            "no bai-manager binary: set BAI_MANAGER_BIN (scripts/test-python does) or build it with "
            "`cargo build -p bai-manager`"
        )
        if os.environ.get("BAI_REQUIRE_SERVICES") == "1":
            pytest.fail(reason + " (BAI_REQUIRE_SERVICES=1)")
        pytest.skip(reason)
    work = Path(tempfile.mkdtemp(prefix="bai-py-manager-"))
    port = _free_port()
    (work / "manager.toml").write_text(
        f"""[manager]
id = "manager-pytest"
metrics-listen = "127.0.0.1:0"
schedule-interval = 0.2

[storage]
root = "{work / 'vfolders'}"
token-secret = "{STORAGE_SECRET}"
"""
    )
    (work / "agent.toml").write_text(
        f"""[agent]
id = "i-pytest-{os.getpid()}"
rpc-listen = "127.0.0.1:0"
metrics-listen = "127.0.0.1:0"
heartbeat-interval = 0.5

[container]
backend = "process"
bind-host = "127.0.0.1"
scratch-root = "{work / 'scratch'}"
scratch-type = "hostdir"
vfolder-root = "{work / 'vfolders'}"
process-root = "{work / 'process'}"

[resource]
reserved-cpu = 0
reserved-mem = "256m"
"""
    )
    log = work / "manager.log"
    env = dict(os.environ, BAI_LOG=os.environ.get("BAI_LOG", "warn"))
    for key in [k for k in env if k.startswith("BAI_MANAGER_")]:
        del env[key]
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [
                binary,
                "--config",
                str(work / "manager.toml"),
                "--db-url",
                f"sqlite://{work / 'manager.db'}?mode=rwc",
                "start-server",
                "--all-in-one",
                "--api-listen",
                f"127.0.0.1:{port}",
                "--agent-config",
                str(work / "agent.toml"),
                "--fixture",
                str(ROOT / "daemons" / "manager" / "fixtures" / "example-users.json"),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
    endpoint = f"http://127.0.0.1:{port}"
    try:

        def answers():
            with urllib.request.urlopen(endpoint + "/", timeout=2) as response:
                return response.status == 200

        _wait_until("GET / to answer", answers, 60, log, process)
        admin = bai.Client(endpoint, *ADMIN, max_retries=0)
        _wait_until("the agent to be ALIVE", lambda: admin.list_agents()["total_count"] > 0, 60, log, process)
        yield endpoint
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        _kill_kernels(work / "process")
        shutil.rmtree(work, ignore_errors=True)


@pytest.fixture(scope="session")
def admin(manager):
    """A client with the example superadmin's keypair."""
    return bai.Client(manager, *ADMIN)


@pytest.fixture(scope="session")
def user(manager):
    """A client with the example regular user's keypair."""
    return bai.Client(manager, *USER)
