"""CLI: ``python -m foundry_magics.emulator --port 8000`` (or ``foundry-emulator``).

The first line printed is always ``foundry-emulator listening on http://HOST:PORT`` so a
parent process can read the port when ``--port 0``. Stops on SIGINT/SIGTERM, after
``--lifetime`` seconds, and (with ``--config-stdin``) when its stdin reaches EOF.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import threading
from typing import Any


def build_parser() -> argparse.ArgumentParser:
    from .options import OPTIONS, SERVER

    p = argparse.ArgumentParser(prog="foundry-emulator",
                                description="Offline emulator of the Foundry / Azure OpenAI REST API.")
    a = p.add_argument
    a("--host", default=SERVER["host"], help="bind address (loopback only unless --allow-remote)")
    a("--port", type=int, default=SERVER["port"], help="port (0 = any free port, printed on the first line)")
    a("--allow-remote", action="store_true", help="allow a non-loopback --host")
    for o in OPTIONS:  # every runtime option; None = not given (the app's default, or what --config-stdin says)
        if not o.runtime:
            continue
        flag = o.flag or "--" + o.name.replace("_", "-")
        if o.name == "api_key":
            g = p.add_mutually_exclusive_group()
            g.add_argument(flag, default=None, help=o.help)
            g.add_argument("--api-key-env", default=None, metavar="VAR", help="read the required key from $VAR")
        elif o.kind == "tokens":
            a(flag, action="append", default=None, dest=o.name, help=o.help)
        elif o.kind == "bool":
            a(flag, action="store_true", default=None, dest=o.name, help=o.help)
        else:
            conv = {"float": float, "float?": float, "int": int}.get(o.kind, str)
            a(flag, type=conv, default=None, dest=o.name, help=o.help)
    a("--lifetime", type=float, default=SERVER["lifetime"], help="stop after this many seconds")
    a("--config-stdin", action="store_true", help=argparse.SUPPRESS)
    return p


def options_from_args(args: argparse.Namespace) -> dict[str, Any]:
    from .options import RUNTIME

    opts: dict[str, Any] = {}
    for k in RUNTIME:
        v = getattr(args, k)
        if v is not None:
            opts[k] = v
    if args.api_key is None and args.api_key_env:
        key = os.environ.get(args.api_key_env)
        if not key:
            raise SystemExit(f"foundry-emulator: environment variable {args.api_key_env} is empty or unset")
        opts["api_key"] = key
    return opts


async def serve(options: dict[str, Any], host: str, port: int, *, lifetime: float | None = None,
                allow_remote: bool = False, watch_stdin: bool = False) -> None:
    from .app import App
    from .server import HTTPServer

    app = App(**options)
    srv = HTTPServer(app, host, port, allow_remote=allow_remote)
    url = await srv.start()
    sys.stdout.write(f"foundry-emulator listening on {url}\n")
    sys.stdout.flush()
    loop = asyncio.get_running_loop()
    done = asyncio.Event()
    app.on_shutdown = done.set
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, done.set)
        except (NotImplementedError, RuntimeError, ValueError):
            pass  # Windows: KeyboardInterrupt ends asyncio.run instead
    if lifetime:
        loop.call_later(lifetime, done.set)
    if watch_stdin:
        def watch() -> None:
            try:  # os.read, not sys.stdin: a daemon thread blocked in a buffered read holds its lock, and
                fd = sys.stdin.fileno()  # the interpreter aborts at exit (/_emulator/shutdown) waiting for it
                while os.read(fd, 65536):
                    pass
            except (OSError, ValueError):
                pass
            loop.call_soon_threadsafe(done.set)

        threading.Thread(target=watch, name="stdin-watch", daemon=True).start()
    try:
        await done.wait()
    finally:
        await srv.close()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    opts = options_from_args(args)
    if args.config_stdin:
        line = sys.stdin.buffer.readline()
        if line.strip():
            given = json.loads(line)
            given.update(opts)
            opts = given
    try:
        asyncio.run(serve(opts, args.host, args.port, lifetime=args.lifetime, allow_remote=args.allow_remote,
                          watch_stdin=args.config_stdin))
    except KeyboardInterrupt:
        pass
    except (ValueError, OSError) as e:
        sys.stderr.write(f"foundry-emulator: {e}\n")
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
