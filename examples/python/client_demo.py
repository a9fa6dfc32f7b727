"""The client from Python: create a session, stream some code's output, destroy the session.

    pip install ./bai-py
    scripts/quickstart            # or any manager; it prints the BACKEND_* variables to export
    python examples/python/client_demo.py [IMAGE]

The client reads BACKEND_ENDPOINT, BACKEND_ACCESS_KEY and BACKEND_SECRET_KEY (or
~/.config/bai/config.toml). IMAGE defaults to BAI_DEMO_IMAGE, else `host` (what the quickstart's
process backend runs; use `bai/python:3.11` on Docker).
"""

import os
import sys

import bai

CODE = """
import sys, platform
for i in range(3):
    print(f"line {i} from Python {platform.python_version()}", flush=True)
print("a warning", file=sys.stderr, flush=True)
name = input("your name? ")
print(f"hello, {name}")
"""


def main():
    image = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("BAI_DEMO_IMAGE", "host")
    try:
        client = bai.Client()
        print(f"manager {client.server_version()['manager']} at {client.endpoint}")
        session = client.create_session(
            image,
            resources={"cpu": 1, "mem": "512m"},
            max_wait=120,
            on_event=lambda event: print(f"  … {event['name']}"),
        )
    except bai.ClientError as err:
        sys.exit(f"{type(err).__name__}: {err}" + (f"\nhint: {err.hint}" if err.hint else ""))
    print(f"session {session['session_name']} is {session['status']}")
    try:
        with client.execute(session["session_id"], CODE) as run:
            for kind, data in run:
                if kind == "stdout":
                    print(data, end="")
                elif kind == "stderr":
                    print(data, end="", file=sys.stderr)
                elif kind == "waiting-input":
                    print("bai", flush=True)
                    run.send_input("bai")
        print(f"exit code {run.exit_code}")
    finally:
        client.destroy_session(session["session_id"], forced=True)
        print(f"destroyed {session['session_name']}")


if __name__ == "__main__":
    main()
