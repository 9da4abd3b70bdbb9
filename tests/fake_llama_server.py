"""A stand-in for ``python -m llama_cpp.server`` that fails on purpose, to test what a run does
when its model server dies (``ENVFOUNDRY_LLAMA_SERVER_MODULE=tests.fake_llama_server``).

It takes the same command line (``--port``, ``--model_alias``, ...), answers ``GET /v1/models``
and chat completions (the answer ``<answer>0</answer>``), and fails as ``FAKE_LLAMA_MODE`` says:

- ``ok``: never fails;
- ``exit_on_load``: exits with code 3 while "loading the model";
- ``crash_first_decode``: serves ``/v1/models``, then kills itself with SIGSEGV on the first
  completion, as llama-cpp-python 0.3.36 does on CPUs with AMX;
- ``crash_after:N``: answers N completions, then SIGSEGVs on the next (a server that dies mid-run).
- ``first_crashes_after:N``: as ``crash_after:N`` for the first server started (in ``$TMPDIR``), the others never
  fail (one slot of several that dies).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def main() -> None:
    args = sys.argv[1:]
    opts = {args[i].lstrip("-"): args[i + 1] for i in range(0, len(args) - 1, 2) if args[i].startswith("--")}
    mode = os.environ.get("FAKE_LLAMA_MODE", "ok")
    alias = opts.get("model_alias", "fake")
    print(f"fake llama server: loading {opts.get('model')} (mode {mode})", flush=True)
    if mode == "exit_on_load":
        print("fake llama server: cannot load the model", flush=True)
        sys.exit(3)
    budget = [10**9]
    if mode == "crash_first_decode":
        budget[0] = 0
    elif mode.startswith("crash_after:"):
        budget[0] = int(mode.split(":", 1)[1])
    elif mode.startswith("first_crashes_after:"):  # only the first server started (of several slots)
        try:
            os.close(os.open(os.path.join(os.environ["TMPDIR"], "fake-llama-first"), os.O_CREAT | os.O_EXCL))
            budget[0] = int(mode.split(":", 1)[1])
        except FileExistsError:
            pass
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, fmt: str, *a: object) -> None:  # one line per request in the log
            print("fake llama server: " + fmt % a, flush=True)

        def _send(self, obj: dict) -> None:
            body = json.dumps(obj).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:  # noqa: N802
            self._send({"object": "list", "data": [{"id": alias, "object": "model"}]})

        def do_POST(self) -> None:  # noqa: N802
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            with lock:
                if budget[0] <= 0:
                    print("fake llama server: decoding ... crash (SIGSEGV)", flush=True)
                    os.kill(os.getpid(), signal.SIGSEGV)
                    time.sleep(60)  # the signal arrives asynchronously: never answer before it does
                budget[0] -= 1
            message = {"role": "assistant", "content": "<answer>0</answer>"}
            self._send({"id": "x", "object": "chat.completion", "model": alias,
                        "choices": [{"index": 0, "finish_reason": "stop", "message": message}],
                        "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}})

    signal.signal(signal.SIGSEGV, signal.SIG_DFL)
    server = ThreadingHTTPServer((opts.get("host", "127.0.0.1"), int(opts["port"])), Handler)
    print(f"fake llama server: listening on {server.server_address}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
