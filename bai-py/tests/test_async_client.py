"""bai.AsyncClient against the same manager (see conftest.py): coroutines, `async for` over
executions and events, and several calls at once. Runs each scenario with asyncio.run, so no
pytest plugin is needed."""

import asyncio
import time

import pytest

import bai
from conftest import ADMIN, USER

RESOURCES = {"cpu": 1, "mem": "256m"}


def run(coro, timeout=120):
    return asyncio.run(asyncio.wait_for(coro, timeout))


def test_session_run_code_and_async_for(manager):
    async def scenario():
        client = bai.AsyncClient(manager, *USER)
        assert "AsyncClient" in repr(client)
        created = await client.create_session("host", name="py-async", resources=RESOURCES, max_wait=120)
        assert created["status"] == "RUNNING", created
        try:
            assert await client.run_code("py-async", "print(6 * 7)") == {"stdout": "42\n", "stderr": "", "exit_code": 0}

            items = []
            async for kind, data in client.execute("py-async", "import sys\nprint('a')\nsys.exit(2)"):
                items.append((kind, data))
            assert ("stdout", "a\n") in items
            assert items[-1] == ("finished", 2)

            # awaited first (connects), then iterated, answering input
            execution = await client.execute(created["session_id"], "print(input() + '!')")
            assert isinstance(execution, bai.AsyncExecution)
            out = ""
            async for kind, data in execution:
                if kind == "waiting-input":
                    await execution.send_input("hi")
                elif kind == "stdout":
                    out += data
            assert out == "hi!\n"
            assert execution.exit_code == 0

            info, files, sessions = await asyncio.gather(
                client.session_info("py-async"), client.session_files("py-async"), client.list_sessions()
            )
            assert info["name"] == "py-async"
            assert isinstance(files, list)
            assert "py-async" in [s["name"] for s in sessions["items"]]

            # awaited: connected before the session is destroyed, so no event is missed
            events = await client.events("py-async", scope="session")
            assert isinstance(events, bai.AsyncEventStream)
            await client.destroy_session("py-async")
            names = []
            async for event in events:
                names.append(event["name"])
                if event["name"] in ("session_terminated", "session_cancelled"):
                    break
            assert names[-1] == "session_terminated", names
        finally:
            try:
                await client.destroy_session("py-async", forced=True)
            except bai.ApiError:
                pass

    run(scenario())


def test_gather_runs_calls_concurrently(manager):
    async def scenario():
        admin = bai.AsyncClient(manager, *ADMIN)
        results = await asyncio.gather(
            admin.list_agents(),
            admin.list_users(),
            admin.list_vfolders(),
            admin.own_keypair(),
            admin.server_version(),
            admin.graphql("query { keypair { access_key } }"),
        )
        assert results[0]["total_count"] >= 1
        assert results[3]["access_key"] == ADMIN[0]
        assert results[5]["keypair"]["access_key"] == ADMIN[0]

        # twenty calls at once finish in about the time of a few, not twenty in a row
        started = time.perf_counter()
        versions = await asyncio.gather(*[admin.server_version() for _ in range(20)])
        assert len({v["version"] for v in versions}) == 1
        assert time.perf_counter() - started < 10

    run(scenario())


def test_the_event_loop_keeps_running_while_calls_wait(manager):
    async def scenario():
        client = bai.AsyncClient(manager, *USER)
        ticks = 0

        async def ticker():
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.01)

        task = asyncio.ensure_future(ticker())
        try:
            await asyncio.gather(*[client.list_vfolders() for _ in range(5)])
            await client.server_version()
        finally:
            task.cancel()
        assert ticks >= 1

    run(scenario())


def test_async_errors(manager):
    async def scenario():
        user = bai.AsyncClient(manager, *USER)
        with pytest.raises(bai.NotFoundError) as caught:
            await user.session_info("no-such-session")
        assert caught.value.status == 404
        with pytest.raises(bai.GraphQLError):
            await user.list_agents()
        with pytest.raises(bai.NotFoundError):
            async for _ in user.execute("no-such-session", "print(1)"):
                pass
        with pytest.raises(bai.AuthError):
            await bai.AsyncClient(manager, USER[0], "wrong").list_vfolders()
        with pytest.raises(bai.UnreachableError):
            await bai.AsyncClient("http://127.0.0.1:9", *USER, max_retries=0).list_vfolders()

    run(scenario())


def test_vfolder_upload_with_progress(manager, tmp_path):
    async def scenario():
        client = bai.AsyncClient(manager, *USER)
        await client.create_vfolder("py-async-data")
        try:
            source = tmp_path / "a.txt"
            source.write_bytes(b"x" * 100_000)
            seen = []
            sent = await client.vfolder_upload("py-async-data", source, progress=lambda d, t: seen.append((d, t)))
            assert sent == 100_000 and seen[-1] == (100_000, 100_000)
            got = await client.vfolder_download("py-async-data", "a.txt", tmp_path / "b.txt")
            assert got == 100_000
        finally:
            await client.delete_vfolder("py-async-data")
        assert (tmp_path / "b.txt").read_bytes() == source.read_bytes()

    run(scenario())
