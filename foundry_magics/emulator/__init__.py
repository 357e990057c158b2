"""Offline emulator of the Foundry / Azure OpenAI REST API (Azurite-style).

    from foundry_magics import emulator
    url = emulator.start(latency=0.2)          # the embedded instance, idempotent
    with emulator.Emulator(rpm=600, lifetime=30) as emu:   # a private one
        ...

Or from a shell: ``python -m foundry_magics.emulator --port 8000``.

Importing this module is cheap (stdlib only); the server (on aiohttp) is loaded on ``start()``.
The options, with their defaults, are listed once, in ``options.py``.
Every reply is marked: header ``x-foundry-emulator: 1``, text starting ``[emulated] ``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    import asyncio

    from foundry_magics.emulator.app import App

__all__ = ["Emulator", "start", "stop", "status", "url"]


def _runtime() -> tuple[str, ...]:
    from .options import RUNTIME

    return RUNTIME


class Emulator:
    """One emulator server, in a daemon thread (default) or in a child process (process=True)."""

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, latency: float = 0.0, token_delay: float = 0.0,
                 rpm: float | None = None, rpm_window: float = 10.0, tpm: float | None = None,
                 fail_rate: float = 0.0, fail_status: int = 500, cut_rate: float = 0.0, stream_cut_rate: float = 0.0,
                 malformed_rate: float = 0.0, wrong_content_type_rate: float = 0.0, slow_body: float = 0.0,
                 fail_first: int = 0, quota_block_seconds: float | None = None, api_key: str | None = None,
                 bearer_tokens=(), expired_tokens=(), deployments=None, strict_models: bool = False,
                 seed: int = 0, batch_seconds: float = 2.0, batch_fail_rate: float = 0.0, batch_expire: int = 0,
                 file_pending_seconds: float = 0.0, batch_refuse_embeddings: bool = False,
                 pack_fault_rate: float = 0.0, pack_faults: str | None = None,
                 lifetime: float | None = None, process: bool = False,
                 allow_remote: bool = False) -> None:
        given = dict(locals())  # the keywords, spelled out for editors and type checkers; tests/test_emulator.py
        from .options import RUNTIME  # checks them (names and defaults) against the table in options.py

        self.host = host
        self.port = port
        self.lifetime = lifetime
        self.process = process
        self.allow_remote = allow_remote
        self.options: dict[str, Any] = {k: given[k] for k in RUNTIME}  # the app's options, from the table
        self.options["bearer_tokens"] = tuple(bearer_tokens or ())
        self.options["expired_tokens"] = tuple(expired_tokens or ())
        self._url: str | None = None
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._app: App | None = None
        self._proc: subprocess.Popen | None = None

    def __repr__(self) -> str:
        mode = "process" if self.process else "thread"
        return f"<Emulator {mode} url={self.url!r}>"

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> str:
        with self._lock:
            if self.url:
                return self._url  # type: ignore[return-value]
            self._url = None
            _check_host(self.host, self.allow_remote)
            return self._start_process() if self.process else self._start_thread()

    def _start_thread(self) -> str:
        import asyncio

        from .app import App
        from .server import HTTPServer

        app = App(record_requests=True, **self.options)
        srv = HTTPServer(app, self.host, self.port, allow_remote=self.allow_remote)  # validates host now
        ready = threading.Event()
        box: dict[str, Any] = {}

        def run() -> None:
            loop = asyncio.new_event_loop()
            box["loop"] = loop
            try:
                asyncio.set_event_loop(loop)
                try:
                    box["url"] = loop.run_until_complete(srv.start())
                except BaseException as e:  # noqa: BLE001 - reported to the starting thread
                    box["error"] = e
                    return
                finally:
                    ready.set()
                if self.lifetime:
                    loop.call_later(self.lifetime, loop.stop)
                app.on_shutdown = lambda: loop.call_soon(loop.stop)
                loop.run_forever()
                loop.run_until_complete(srv.close())
                pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
                for t in pending:
                    t.cancel()
                if pending:
                    loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            finally:
                loop.close()

        self._app = app
        t = threading.Thread(target=run, name="foundry-emulator", daemon=True)
        t.start()
        ready.wait(15)
        if "error" in box:
            raise box["error"]
        if "url" not in box:
            raise RuntimeError("foundry emulator did not start within 15 s")
        self._thread = t
        self._loop = box["loop"]
        self._url = box["url"]
        return self._url

    def _start_process(self) -> str:
        cmd = [sys.executable, "-m", "foundry_magics.emulator", "--host", self.host, "--port", str(self.port),
               "--config-stdin"]
        if self.lifetime:
            cmd += ["--lifetime", str(self.lifetime)]
        if self.allow_remote:
            cmd.append("--allow-remote")
        env = dict(os.environ)
        pkg_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        env["PYTHONPATH"] = pkg_root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
        try:
            assert proc.stdin is not None and proc.stdout is not None
            # options (secrets included) go through the pipe: never on the command line or in the environment
            proc.stdin.write(json.dumps(self.options).encode() + b"\n")
            proc.stdin.flush()
            box: dict[str, bytes] = {}
            out = proc.stdout
            assert out is not None  # stdout=PIPE
            reader = threading.Thread(target=lambda: box.setdefault("line", out.readline()), daemon=True)
            reader.start()
            reader.join(20)
            line = box.get("line", b"").decode(errors="replace").strip()
            prefix = "foundry-emulator listening on "
            if not line.startswith(prefix):
                raise RuntimeError(f"foundry emulator process did not start (got {line!r}, exit code {proc.poll()})")
        except BaseException:
            _kill(proc)
            raise
        self._proc = proc
        self._url = line[len(prefix):]
        return self._url

    def stop(self) -> None:
        with self._lock:
            t, self._thread = self._thread, None
            proc, self._proc = self._proc, None
            loop, self._loop = self._loop, None
            self._url = None
        if t is not None:
            if loop is not None:
                try:
                    loop.call_soon_threadsafe(loop.stop)
                except RuntimeError:
                    pass  # loop already closed (lifetime ended)
            t.join(10)
        if proc is not None:
            _kill(proc)

    @property
    def url(self) -> str | None:
        if self._url is None:
            return None
        if self._thread is not None and self._thread.is_alive():
            return self._url
        if self._proc is not None and self._proc.poll() is None:
            return self._url
        return None

    @property
    def running(self) -> bool:
        return self.url is not None

    def __enter__(self) -> "Emulator":
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def __del__(self) -> None:
        try:
            if self._proc is not None:
                _kill(self._proc)
        except Exception:
            pass

    # ------------------------------------------------------------------ introspection / control
    @property
    def requests(self) -> list:
        """Thread mode: the last 1000 requests as (method, path+query, headers, json body)."""
        return list(self._app.requests) if self._app is not None and not self.process else []

    def stats(self) -> dict:
        app = self._app
        if app is not None and self._in_thread():
            return self._call(app.stats)
        if self._proc is not None and self.url:
            return self._admin("GET", "stats")
        if self._app is not None:
            return self._app.stats()
        tokens = {"prompt": 0, "completion": 0, "total": 0, "cached": 0, "reasoning": 0}
        return {"requests": 0, "by_route": {}, "by_status": {}, "tokens": tokens}

    def reset_stats(self) -> None:
        app = self._app
        if app is not None and self._in_thread():
            self._call(app.reset_stats)
        elif self._proc is not None and self.url:
            self._admin("POST", "reset", {})

    def configure(self, **options: Any) -> dict:
        unknown = set(options) - set(_runtime())
        if unknown:
            raise TypeError(f"unknown or non-runtime emulator option(s): {', '.join(sorted(unknown))}")
        self.options.update(options)
        app = self._app
        if app is not None and self._in_thread():
            return self._call(lambda: app.configure(**options))
        if self._proc is not None and self.url:
            return self._admin("POST", "config", options)["options"]
        return dict(self.options)

    # ------------------------------------------------------------------ internals
    def _in_thread(self) -> bool:
        return self._app is not None and self._thread is not None and self._thread.is_alive() and not self.process

    def _call(self, fn: Callable[[], Any]) -> Any:
        """Run fn on the emulator's loop thread and wait for its result."""
        import concurrent.futures

        loop = self._loop
        if loop is None or loop.is_closed():
            return fn()
        fut: concurrent.futures.Future = concurrent.futures.Future()

        def run() -> None:
            try:
                fut.set_result(fn())
            except BaseException as e:  # noqa: BLE001
                fut.set_exception(e)

        try:
            loop.call_soon_threadsafe(run)
        except RuntimeError:
            return fn()
        return fut.result(10)

    def _admin(self, method: str, name: str, payload: Any = None) -> Any:
        import urllib.request

        data = json.dumps(payload).encode() if payload is not None else None
        req = urllib.request.Request(f"{self._url}/_emulator/{name}", data=data, method=method,
                                     headers={"content-type": "application/json"})
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(req, timeout=10) as r:
            return json.loads(r.read())


def _check_host(host: str, allow_remote: bool) -> None:
    from .wire import is_loopback

    if not allow_remote and not is_loopback(host):
        raise ValueError(f"refusing to listen on non-loopback host {host!r}: the emulator accepts any credentials; "
                         "pass allow_remote=True if you really mean it")


def _kill(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        try:
            if proc.stdin is not None:
                proc.stdin.close()  # the child exits on EOF
        except OSError:
            pass
        try:
            proc.wait(3)
        except subprocess.TimeoutExpired:
            proc.terminate()
            try:
                proc.wait(3)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(3)
    for f in (proc.stdin, proc.stdout):
        try:
            if f is not None:
                f.close()
        except OSError:
            pass


# ---------------------------------------------------------------------- the embedded instance

_embedded: Emulator | None = None
_embedded_lock = threading.Lock()


def start(port: int = 0, **options: Any) -> str:
    """Start the embedded emulator (idempotent: returns the running URL if already started;
    runtime options given again are applied with configure())."""
    global _embedded
    with _embedded_lock:
        if _embedded is not None and _embedded.url:
            runtime = {k: v for k, v in options.items() if k in _runtime()}
            if runtime:
                _embedded.configure(**runtime)
            return _embedded.url
        _embedded = Emulator(port=port, **options)
        return _embedded.start()


def stop() -> None:
    global _embedded
    with _embedded_lock:
        emu, _embedded = _embedded, None
    if emu is not None:
        emu.stop()


def url() -> str | None:
    emu = _embedded
    return emu.url if emu is not None else None


def status() -> dict:
    emu = _embedded
    if emu is None or not emu.url:
        return {"running": False, "url": None, "options": {}, "stats": None}
    opts = dict(emu.options)
    opts["api_key"] = "***" if opts.get("api_key") else None
    opts["bearer_tokens"] = ["***"] * len(opts.get("bearer_tokens") or ())
    opts["expired_tokens"] = ["***"] * len(opts.get("expired_tokens") or ())
    return {"running": True, "url": emu.url, "options": opts, "stats": emu.stats()}
