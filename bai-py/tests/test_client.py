"""bai.Client against a real all-in-one manager (see conftest.py): sessions, streaming
execution with input, files, events, folders with progress, administration, errors, and the GIL
released while calls wait."""

import threading
import time
import uuid

import pytest

import bai
from conftest import USER

RESOURCES = {"cpu": 1, "mem": "256m"}


@pytest.fixture(scope="module")
def session(user):
    """A running session of the regular user, destroyed after the module."""
    created = user.create_session("host", name="py-main", resources=RESOURCES, max_wait=120)
    assert created["status"] == "RUNNING", created
    yield created
    user.destroy_session(created["session_id"], forced=True)


def test_server_version_and_repr(user):
    assert user.server_version()["version"].startswith("v")
    assert "AKIANABBDUSEREXAMPLE" in repr(user)
    assert user.access_key == USER[0]
    assert user.endpoint.startswith("http://127.0.0.1:")


def test_session_is_listed_and_described(user, session):
    page = user.list_sessions()
    assert page["total_count"] >= 1
    names = [s["name"] for s in page["items"]]
    assert "py-main" in names
    assert "py-main" in [s["name"] for s in user.all_sessions("running")]
    info = user.session_info("py-main")
    assert info["id"] == session["session_id"]
    assert info["status"] == "RUNNING"
    assert info["containers"][0]["cluster_role"] == "main"
    # a UUID works where a name does
    assert user.session_info(uuid.UUID(session["session_id"]))["name"] == "py-main"


def test_execute_streams_stdout_and_stderr_in_order(user, session):
    code = "import sys\nprint('out', flush=True)\nprint('err', file=sys.stderr, flush=True)\nprint(6 * 7)\nsys.exit(3)"
    run = user.execute("py-main", code)
    assert isinstance(run, bai.Execution)
    assert run.exit_code is None
    items = list(run)
    stdout = "".join(data for kind, data in items if kind == "stdout")
    stderr = "".join(data for kind, data in items if kind == "stderr")
    assert (stdout, stderr) == ("out\n42\n", "err\n"), items
    # Each stream keeps its own order ('out' before '42'); between stdout and stderr there is
    # no order to assert: the runner reads the two pipes in two threads, as terminals do.
    assert items[-1] == ("finished", 3), items
    assert run.exit_code == 3


def test_execute_answers_input(user, session):
    out = ""
    answered = False
    with user.execute(session["session_id"], "x = input('name? ')\nprint(x * 2)") as run:
        for kind, data in run:
            if kind == "waiting-input":
                assert data == {"is_password": False}
                run.send_input("ab")
                answered = True
            elif kind == "stdout":
                out += data
    assert answered
    assert out.endswith("abab\n"), out
    assert run.exit_code == 0


def test_run_code(user, session):
    assert user.run_code("py-main", "print(6 * 7)") == {"stdout": "42\n", "stderr": "", "exit_code": 0}


def test_files_upload_list_download(user, session, tmp_path):
    local = tmp_path / "data.txt"
    local.write_text("payload")
    user.upload_to_session("py-main", [(local, "sub/data file.txt"), str(local)])
    files = {f["filename"]: f for f in user.session_files("py-main", "sub")}
    assert files["data file.txt"]["size"] == 7
    assert "data.txt" in [f["filename"] for f in user.session_files("py-main")]
    written = user.download_from_session("py-main", "sub/data file.txt", tmp_path / "down")
    assert len(written) == 1
    with open(written[0]) as f:
        assert f.read() == "payload"
    assert isinstance(user.session_logs("py-main"), str)


def test_lifecycle_with_events(user):
    created = user.create_session("host", name="py-events", resources=RESOURCES, max_wait=120)
    assert created["status"] == "RUNNING", created
    events = user.events("py-events", scope="session")
    assert isinstance(events, bai.EventStream)
    user.destroy_session("py-events")
    names = []
    for event in events:
        assert event["session_id"] == created["session_id"]
        names.append(event["name"])
        if event["name"] in ("session_terminated", "session_cancelled"):
            break
    assert names[-1] == "session_terminated", names
    dead = [s["name"] for s in user.all_sessions("dead")]
    assert "py-events" in dead


def test_create_session_reports_its_events(user):
    seen = []
    created = user.create_session(
        "host", name="py-watched", resources=RESOURCES, max_wait=120, on_event=lambda e: seen.append(e["name"])
    )
    try:
        assert created["status"] == "RUNNING", created
        assert seen, "on_event was never called"
    finally:
        user.destroy_session("py-watched", forced=True)


def test_vfolder_upload_download_with_progress(user, tmp_path):
    name = f"py-data-{uuid.uuid4().hex[:6]}"
    folder = user.create_vfolder(name)
    assert folder["name"] == name
    try:
        assert name in [f["name"] for f in user.list_vfolders()]
        assert user.vfolder_info(name)["name"] == name
        assert user.vfolder_hosts()["allowed"]
        source = tmp_path / "blob.bin"
        payload = bytes(range(256)) * 4096  # 1 MiB
        source.write_bytes(payload)
        progress = []
        assert user.vfolder_upload(name, source, "dir/blob.bin", progress=lambda d, t: progress.append((d, t))) == len(
            payload
        )
        assert progress[0] == (0, len(payload)) and progress[-1] == (len(payload), len(payload)), progress
        user.vfolder_mkdir(name, "empty/nested", parents=True)
        assert {f["filename"] for f in user.vfolder_files(name)} >= {"dir", "empty"}
        target = tmp_path / "copy.bin"
        seen = []
        assert user.vfolder_download(name, "dir/blob.bin", target, progress=lambda d, t: seen.append(d)) == len(payload)
        assert target.read_bytes() == payload
        assert seen[-1] == len(payload)
        with pytest.raises(bai.InvalidInputError):
            user.vfolder_download(name, "dir/blob.bin", target)  # exists; overwrite=False
        user.vfolder_delete_files(name, "dir", recursive=True)
        assert "dir" not in {f["filename"] for f in user.vfolder_files(name)}
    finally:
        user.delete_vfolder(name)
    assert name not in [f["name"] for f in user.list_vfolders()]


def test_progress_callback_errors_are_raised(user, tmp_path):
    name = f"py-cb-{uuid.uuid4().hex[:6]}"
    user.create_vfolder(name)
    try:
        source = tmp_path / "x.txt"
        source.write_text("x")

        def broken(done, total):
            raise KeyError("from the callback")

        with pytest.raises(KeyError, match="from the callback"):
            user.vfolder_upload(name, source, progress=broken)
    finally:
        user.delete_vfolder(name)


def test_admin_listings(admin):
    agents = admin.list_agents()
    assert agents["total_count"] >= 1
    assert agents["items"][0]["status"] == "ALIVE"
    assert "cpu" in agents["items"][0]["available_slots"]
    assert admin.own_keypair()["access_key"] == "AKIAIOSFODNN7EXAMPLE"
    assert admin.list_keypairs(limit=10)["total_count"] >= 2
    assert admin.list_users()["total_count"] >= 2
    assert "default" in [d["name"] for d in admin.list_domains()]
    assert "default" in [g["name"] for g in admin.list_groups()]
    assert isinstance(admin.list_images(), list)
    assert "default" in [s["name"] for s in admin.list_scaling_groups()]
    assert "default" in [p["name"] for p in admin.list_resource_policies()]
    assert isinstance(admin.list_presets(), list)
    assert isinstance(admin.check_presets(), dict)
    data = admin.graphql("query($limit: Int!) { agent_list(limit: $limit, offset: 0) { total_count } }", {"limit": 5})
    assert data["agent_list"]["total_count"] >= 1


def test_keypair_administration(admin, manager):
    email = f"py-{uuid.uuid4().hex[:6]}@example.com"
    created = admin.create_user(email, "a-password-1")
    assert created["email"] == email
    keys = admin.create_keypair(email)
    other = bai.Client(manager, keys["access_key"], keys["secret_key"])
    assert other.own_keypair()["access_key"] == keys["access_key"]
    admin.set_keypair_active(keys["access_key"], False)
    with pytest.raises(bai.AuthError):
        other.own_keypair()
    admin.delete_keypair(keys["access_key"])
    with pytest.raises(bai.RejectedError):
        admin.delete_keypair(keys["access_key"])


def test_user_gets_graphql_errors_for_admin_calls(user):
    with pytest.raises(bai.GraphQLError) as caught:
        user.list_agents()
    assert caught.value.errors and caught.value.errors[0]["message"]
    assert isinstance(caught.value, bai.ClientError) and isinstance(caught.value, bai.BaiError)
    with pytest.raises(bai.GraphQLError):
        user.graphql("query { no_such_field }")


def test_apps_of_a_session(user, admin, session):
    # The test manager's kernels are local processes: their image declares no apps.
    assert user.apps(session["session_name"]) == []
    with pytest.raises(bai.NotFoundError) as caught:
        user.app_link(session["session_name"], "jupyter")
    assert 'no app "jupyter"' in str(caught.value)
    with pytest.raises(bai.NotFoundError):
        admin.apps(session["session_name"])  # apps are for the session's owner only


def test_not_found_has_status_and_problem(user):
    with pytest.raises(bai.NotFoundError) as caught:
        user.destroy_session("no-such-session")
    err = caught.value
    assert isinstance(err, bai.ApiError)
    assert err.status == 404
    assert err.problem["type"].endswith("object-not-found")
    assert "bai session ls" in err.hint
    assert "404" in str(err)
    with pytest.raises(bai.NotFoundError):
        user.session_info("no-such-session")
    with pytest.raises(bai.NotFoundError):
        user.execute("no-such-session", "print(1)")
    with pytest.raises(bai.ApiError) as bad:
        user.create_session("host", name="x")  # too short a name
    assert bad.value.status == 400


def test_bad_secret_is_an_auth_error(manager):
    client = bai.Client(manager, USER[0], "not-the-secret")
    with pytest.raises(bai.AuthError) as caught:
        client.list_vfolders()
    assert caught.value.status == 401
    assert "BACKEND_SECRET_KEY" in caught.value.hint


def test_unreachable_endpoint():
    client = bai.Client("http://127.0.0.1:9", *USER, max_retries=0)
    with pytest.raises(bai.UnreachableError) as caught:
        client.list_vfolders()
    assert isinstance(caught.value, ConnectionError)
    assert caught.value.url.startswith("http://127.0.0.1:9")


def test_invalid_input_and_config():
    with pytest.raises(bai.ConfigError) as caught:
        bai.Client("localhost:8081", *USER)
    assert isinstance(caught.value, ValueError)
    assert caught.value.field == "endpoint"
    client = bai.Client("http://127.0.0.1:9", *USER, max_retries=0)
    with pytest.raises(bai.InvalidInputError) as bad:
        client.list_sessions(limit=0)
    assert isinstance(bad.value, ValueError) and bad.value.field == "limit"
    with pytest.raises(bai.InvalidInputError):
        client.create_session("")
    with pytest.raises(bai.InvalidInputError):
        client.create_session("host", session_type="nightly")
    with pytest.raises(bai.InvalidInputError):
        client.graphql("query { x }", {"v": object()})
    with pytest.raises(bai.LocalFileError) as missing:
        client.upload_to_session("s", "/no/such/file")
    assert isinstance(missing.value, OSError) and missing.value.path == "/no/such/file"


def test_the_gil_is_released_while_a_call_waits(user, session):
    ticks = []
    stop = threading.Event()

    def ticker():
        while not stop.is_set():
            ticks.append(time.perf_counter())
            time.sleep(0.005)

    thread = threading.Thread(target=ticker)
    thread.start()
    try:
        time.sleep(0.05)
        started = time.perf_counter()
        assert user.run_code("py-main", "import time; time.sleep(1.0); print('done')")["stdout"] == "done\n"
        ended = time.perf_counter()
    finally:
        stop.set()
        thread.join()
    during = [t for t in ticks if started < t < ended]
    assert ended - started >= 1.0
    assert len(during) > 20, f"only {len(during)} ticks in {ended - started:.2f} s"


def test_calls_from_threads_share_the_runtime(user, session):
    results = [None] * 4

    def run(i):
        results[i] = user.run_code("py-main", f"print({i} * 10)")["stdout"]

    threads = [threading.Thread(target=run, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [f"{i * 10}\n" for i in range(4)]


def test_ctrl_c_interrupts_a_blocking_call(user, session):
    import _thread
    import signal

    # A process started in the background inherits SIGINT ignored, and then Python ignores it
    # too (interrupt_main does nothing): handle it as an interactive Python would.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        timer = threading.Timer(0.3, _thread.interrupt_main)
        started = time.perf_counter()
        timer.start()
        with pytest.raises(KeyboardInterrupt):
            user.run_code("py-main", "import time; time.sleep(3)")
        assert time.perf_counter() - started < 2.5
    finally:
        signal.signal(signal.SIGINT, previous)
    # the client still works afterwards
    assert user.run_code("py-main", "print(1)")["stdout"] == "1\n"


def test_example_script(manager):
    import os
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[2] / "examples" / "python" / "client_demo.py"
    env = dict(os.environ, BACKEND_ENDPOINT=manager, BACKEND_ACCESS_KEY=USER[0], BACKEND_SECRET_KEY=USER[1])
    done = subprocess.run([sys.executable, str(script), "host"], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "line 2 from Python" in done.stdout
    assert "hello, bai" in done.stdout
    assert "exit code 0" in done.stdout
    assert "a warning" in done.stderr
