"""The bai kernel runner: runs code in a Python kernel for the agent, over stdin and stdout.

The agent starts it with an attached exec (``python3 -u /opt/kernel/bai_runner.py``) and talks
to it in frames: a 4-byte big-endian length, then that many bytes of a UTF-8 JSON object.

At start the runner moves the protocol onto private file descriptors (duplicates of fds 0 and 1
that child processes do not inherit), points fd 0 at /dev/null and fds 1 and 2 at pipes that two
threads read. So everything user code and its subprocesses print becomes ``stdout``/``stderr``
frames, and nothing can corrupt the frame stream. The runner's own diagnostics go to the
original fd 2 (the exec's stderr). Before it sends ``finished``, ``waiting-input``, ``media`` or
``html``, the runner writes a marker into both pipes and waits until their readers reach it, so
everything printed before has been sent first. Output printed between runs (by a thread or a
background process) carries a null run_id.

Interrupts: SIGINT is blocked in every thread but the main one, and there only while user code
runs; ``interrupt`` sends SIGINT to the main thread, which also wakes blocking calls such as
``time.sleep`` or ``subprocess.run``.

Agent -> runner (key ``op``):
  code       {run_id, code}   run code in the kernel's namespace (one run at a time, in order)
  input      {run_id, data}   the answer to a ``waiting-input``
  interrupt  {}               KeyboardInterrupt in the running code (none if idle)
  status     {}               replied to with ``status``
  exit       {}               stop the runner (so does EOF on stdin)

Runner -> agent (key ``type``):
  ready          {started_at, pid, version}   once, first
  stdout/stderr  {run_id, data}               console text (run_id null between runs)
  media          {run_id, data: {type, data}} from bai.display_media()
  html           {run_id, data}               from bai.display_html()
  waiting-input  {run_id, options: {is_password}}   input() or getpass() is waiting
  finished       {run_id, exitCode}           0, 1 after an exception (traceback on stderr),
                                              or the code of SystemExit
  status         {started_at}
  error          {message}                    a request the runner could not understand

Standard library only; Python 3.6 or newer.
"""

import ast
import base64
import builtins
import codecs
import io
import json
import linecache
import os
import queue
import signal
import struct
import sys
import threading
import time
import traceback
import types

PROTOCOL_VERSION = 1
MAX_FRAME = 64 * 1024 * 1024
# Written into the output pipes to find where a run's output ends; NUL and ESC keep it out of
# ordinary text.
SYNC_MARK = b"\x00\x1b[bai-sync]\x1b\x00"
RUNNER_FILE = os.path.abspath(__file__)


class Protocol:
    """Frames over the private fds."""

    def __init__(self, fd_in, fd_out):
        self.fd_in = fd_in
        self.fd_out = fd_out
        self.lock = threading.Lock()

    def send(self, message):
        payload = json.dumps(message, ensure_ascii=False).encode("utf-8", "surrogatepass")
        data = struct.pack(">I", len(payload)) + payload
        with self.lock:
            view = memoryview(data)
            while view:
                written = os.write(self.fd_out, view)
                view = view[written:]

    def _read_exact(self, n):
        chunks = []
        while n:
            chunk = os.read(self.fd_in, n)
            if not chunk:
                return None
            chunks.append(chunk)
            n -= len(chunk)
        return b"".join(chunks)

    def receive(self):
        """The next payload (bytes), or None at EOF."""
        header = self._read_exact(4)
        if header is None:
            return None
        (length,) = struct.unpack(">I", header)
        if length > MAX_FRAME:
            raise ValueError("frame of %d bytes exceeds %d" % (length, MAX_FRAME))
        return self._read_exact(length)


class OutputPump(threading.Thread):
    """Reads one output pipe and turns what arrives into console frames."""

    def __init__(self, runner, fd, kind):
        super().__init__(name="bai-" + kind, daemon=True)
        self.runner = runner
        self.fd = fd
        self.kind = kind
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.cond = threading.Condition()
        self.write_lock = threading.Lock()
        self.fd_write = None
        self.marks_written = 0
        self.marks_seen = 0

    def _emit(self, data):
        if not data:
            return
        text = self.decoder.decode(data)
        if text:
            self.runner.send_console(self.kind, text)

    def run(self):
        pending = b""
        while True:
            try:
                chunk = os.read(self.fd, 65536)
            except InterruptedError:
                continue
            if not chunk:
                return
            pending += chunk
            while True:
                at = pending.find(SYNC_MARK)
                if at < 0:
                    break
                self._emit(pending[:at])
                pending = pending[at + len(SYNC_MARK):]
                with self.cond:
                    self.marks_seen += 1
                    self.cond.notify_all()
            # Hold back a tail that may be the start of a mark split across reads.
            keep = 0
            for k in range(min(len(pending), len(SYNC_MARK) - 1), 0, -1):
                if pending.endswith(SYNC_MARK[:k]):
                    keep = k
                    break
            self._emit(pending[: len(pending) - keep])
            pending = pending[len(pending) - keep:]

    def sync(self):
        """Returns once everything written to the pipe before the call has been sent."""
        # A write this short to a pipe is atomic, so other writers cannot split the mark.
        with self.write_lock:
            self.marks_written += 1
            target = self.marks_written
            os.write(self.fd_write, SYNC_MARK)
        with self.cond:
            while self.marks_seen < target:
                self.cond.wait()


class StdinProxy(io.TextIOBase):
    """sys.stdin for user code: each read asks the agent for a line of input."""

    def __init__(self, runner):
        super().__init__()
        self.runner = runner

    def readable(self):
        return True

    def readline(self, size=-1):
        line = self.runner.request_input("", False)
        return line if line.endswith("\n") else line + "\n"

    def read(self, size=-1):
        return self.runner.request_input("", False)


class BaiHelper:
    """The ``bai`` object in the kernel's namespace: rich output for the agent's console."""

    def __init__(self, runner):
        self._runner = runner

    def display_html(self, html):
        """Shows an HTML fragment."""
        self._runner.send_rich("html", str(html))

    def display_media(self, mime, data):
        """Shows media: ``data`` is text, or bytes (sent base64-encoded)."""
        if isinstance(data, (bytes, bytearray)):
            data = base64.b64encode(bytes(data)).decode("ascii")
        self._runner.send_rich("media", {"type": str(mime), "data": data})


class Runner:
    def __init__(self):
        self.started_at = time.time()
        # The protocol moves to private fds (os.dup makes them non-inheritable).
        proto_in = os.dup(0)
        proto_out = os.dup(1)
        self.diag = os.dup(2)
        self.protocol = Protocol(proto_in, proto_out)
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.close(devnull)
        self.pumps = {}
        for fd, kind in ((1, "stdout"), (2, "stderr")):
            read_end, write_end = os.pipe()
            os.dup2(write_end, fd)
            os.close(write_end)
            pump = OutputPump(self, read_end, kind)
            pump.fd_write = fd
            self.pumps[kind] = pump
        sys.stdout = io.TextIOWrapper(os.fdopen(1, "wb", buffering=0, closefd=False),
                                      encoding="utf-8", errors="backslashreplace",
                                      line_buffering=True, write_through=True)
        sys.stderr = io.TextIOWrapper(os.fdopen(2, "wb", buffering=0, closefd=False),
                                      encoding="utf-8", errors="backslashreplace",
                                      line_buffering=True, write_through=True)
        sys.stdin = StdinProxy(self)
        self.run_id = None
        self.run_lock = threading.Lock()
        self.commands = queue.Queue()
        self.inputs = queue.Queue()
        self.main_thread = threading.main_thread().ident
        self.cell = 0
        # The kernel's namespace is a module of its own that stands in for __main__, so that
        # pickle and friends find what user code defines.
        main = types.ModuleType("__main__")
        main.__dict__.update({"__builtins__": builtins, "bai": BaiHelper(self)})
        sys.modules["__main__"] = main
        self.namespace = main.__dict__
        builtins.input = self.builtin_input
        try:
            import getpass

            getpass.getpass = self.getpass
        except ImportError:
            pass

    # --- output ---

    def log(self, text):
        try:
            os.write(self.diag, ("bai_runner: %s\n" % text).encode("utf-8", "replace"))
        except OSError:
            pass

    def send(self, message):
        # An interrupt in the middle of a frame would corrupt the stream: the main thread holds
        # SIGINT back while it writes (a pending one is raised when the mask is restored).
        in_main = threading.get_ident() == self.main_thread
        if in_main:
            mask = signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGINT])
        try:
            self.protocol.send(message)
        except OSError as err:
            # The agent is gone: nothing left to do.
            self.log("cannot send a frame (%s); exiting" % err)
            os._exit(0)
        finally:
            if in_main:
                signal.pthread_sigmask(signal.SIG_SETMASK, mask)

    def send_console(self, kind, text):
        self.send({"type": kind, "run_id": self.run_id, "data": text})

    def sync_output(self):
        for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
            try:
                if stream is not None:
                    stream.flush()
            except Exception:
                pass
        for pump in self.pumps.values():
            pump.sync()

    def send_rich(self, kind, data):
        self.sync_output()
        self.send({"type": kind, "run_id": self.run_id, "data": data})

    # --- input ---

    def request_input(self, prompt, is_password):
        run_id = self.run_id
        if run_id is None:
            raise EOFError("no input outside of a run")
        if prompt:
            sys.stdout.write(str(prompt))
        self.sync_output()
        while True:  # drop answers meant for an earlier request
            try:
                self.inputs.get_nowait()
            except queue.Empty:
                break
        self.send({"type": "waiting-input", "run_id": run_id, "options": {"is_password": bool(is_password)}})
        while True:
            try:
                answer = self.inputs.get(timeout=0.5)
            except queue.Empty:
                continue
            except KeyboardInterrupt:
                # Raised afresh, so the traceback does not show the queue's internals.
                raise KeyboardInterrupt() from None
            if answer is None:
                raise EOFError("the agent closed the runner")
            if answer[0] in (None, run_id):
                return answer[1]

    def builtin_input(self, prompt=""):
        line = self.request_input(prompt, False)
        return line[:-1] if line.endswith("\n") else line

    def getpass(self, prompt="Password: ", stream=None):
        line = self.request_input(prompt, True)
        return line[:-1] if line.endswith("\n") else line

    # --- the protocol reader (its own thread) ---

    def read_requests(self):
        while True:
            try:
                payload = self.protocol.receive()
            except (OSError, ValueError) as err:
                self.log("bad request stream: %s" % err)
                payload = None
            if payload is None:
                self.shutdown()
                return
            try:
                message = json.loads(payload.decode("utf-8"))
            except ValueError as err:
                self.send({"type": "error", "message": "a request is not JSON: %s" % err})
                continue
            if not isinstance(message, dict):
                self.send({"type": "error", "message": "a request must be a JSON object"})
                continue
            op = message.get("op")
            if op == "code":
                run_id, code = message.get("run_id"), message.get("code")
                if not isinstance(run_id, str) or not isinstance(code, str):
                    self.send({"type": "error", "message": "code needs a string run_id and code"})
                    continue
                self.commands.put((run_id, code))
            elif op == "input":
                data = message.get("data")
                self.inputs.put((message.get("run_id"), data if isinstance(data, str) else ""))
            elif op == "interrupt":
                self.interrupt()
            elif op == "status":
                self.send({"type": "status", "started_at": self.started_at})
            elif op == "exit":
                self.shutdown()
                return
            else:
                self.send({"type": "error", "message": "unknown op %r" % (op,)})

    def interrupt(self):
        with self.run_lock:
            if self.run_id is not None:
                # SIGINT is unblocked only in the main thread and only while user code runs.
                signal.pthread_kill(self.main_thread, signal.SIGINT)

    def shutdown(self):
        self.commands.put(None)
        self.inputs.put(None)
        self.interrupt()
        # Code that ignores KeyboardInterrupt must not keep the runner alive.
        timer = threading.Timer(3.0, os._exit, args=(0,))
        timer.daemon = True
        timer.start()

    # --- running code (the main thread) ---

    def compile_cell(self, code):
        self.cell += 1
        filename = "<cell %d>" % self.cell
        linecache.cache[filename] = (len(code), None, code.splitlines(True), filename)
        tree = ast.parse(code, filename, "exec")
        units = []
        body = tree.body
        if body and isinstance(body[-1], ast.Expr):
            if len(body) > 1:
                units.append(compile(ast.Module(body=body[:-1], type_ignores=[]), filename, "exec"))
            # "single" mode prints a non-None value through sys.displayhook, as a REPL does.
            units.append(compile(ast.Interactive(body=body[-1:]), filename, "single"))
        else:
            units.append(compile(tree, filename, "exec"))
        return units

    def run_code(self, code):
        """Runs a cell and returns its exit code."""
        # An interrupt meant for the previous run may still be pending: consume it.
        if signal.SIGINT in signal.sigpending():
            signal.sigwait([signal.SIGINT])
        try:
            units = self.compile_cell(code)
        except (SyntaxError, ValueError) as err:  # ValueError: NUL bytes in the source
            sys.stderr.write("".join(traceback.format_exception_only(type(err), err)))
            return 1
        try:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, [signal.SIGINT])
            try:
                for unit in units:
                    exec(unit, self.namespace)
            finally:
                signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGINT])
            return 0
        except SystemExit as exit_:
            if exit_.code is None:
                return 0
            if isinstance(exit_.code, int):
                return exit_.code
            sys.stderr.write("%s\n" % (exit_.code,))
            return 1
        except BaseException as err:
            self.print_exception(err)
            return 1

    def print_exception(self, err):
        report = traceback.TracebackException(type(err), err, err.__traceback__)
        # The user's code is all that matters: drop the runner's own frames, here and in the
        # exceptions chained to this one.
        seen = set()
        pending = [report]
        while pending:
            item = pending.pop()
            if item is None or id(item) in seen:
                continue
            seen.add(id(item))
            item.stack = traceback.StackSummary.from_list(
                [frame for frame in item.stack if frame.filename != RUNNER_FILE])
            pending.extend([item.__cause__, item.__context__])
        try:
            sys.stderr.write("".join(report.format()))
        except Exception:
            pass

    def serve(self):
        signal.signal(signal.SIGINT, signal.default_int_handler)
        # Threads started from here on inherit the blocked SIGINT.
        signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGINT])
        for pump in self.pumps.values():
            pump.start()
        reader = threading.Thread(target=self.read_requests, name="bai-requests", daemon=True)
        reader.start()
        self.send({"type": "ready", "started_at": self.started_at, "pid": os.getpid(),
                   "version": PROTOCOL_VERSION})
        while True:
            command = self.commands.get()
            if command is None:
                break
            run_id, code = command
            with self.run_lock:
                self.run_id = run_id
            exit_code = 1
            try:
                exit_code = self.run_code(code)
                self.sync_output()
            except BaseException as err:  # a late interrupt, or a broken print
                self.log("error after run %s: %r" % (run_id, err))
                try:
                    self.sync_output()
                except BaseException:
                    pass
            with self.run_lock:
                self.run_id = None
            self.send({"type": "finished", "run_id": run_id, "exitCode": exit_code})
        self.sync_output()
        os._exit(0)


def main():
    try:
        runner = Runner()
    except Exception as err:
        sys.__stderr__.write("bai_runner: cannot start: %r\n" % (err,))
        return 1
    runner.serve()
    return 0


if __name__ == "__main__":
    sys.exit(main())
