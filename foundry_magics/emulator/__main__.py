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
    p = argparse.ArgumentParser(prog="foundry-emulator",
                                description="Offline emulator of the Foundry / Azure OpenAI REST API.")
    a = p.add_argument
    a("--host", default="127.0.0.1", help="bind address (loopback only unless --allow-remote)")
    a("--port", type=int, default=0, help="port (0 = any free port, printed on the first line)")
    a("--allow-remote", action="store_true", help="allow a non-loopback --host")
    a("--latency", type=float, default=None, help="seconds before response headers")
    a("--token-delay", type=float, default=None, help="seconds between streamed tokens")
    a("--rpm", type=float, default=None, help="requests per minute (enforced per window)")
    a("--rpm-window", type=float, default=None, help="rate-limit window in seconds (default 10)")
    a("--tpm", type=float, default=None, help="tokens per minute (prompt chars/4 + max_tokens)")
    a("--fail-rate", type=float, default=None)
    a("--fail-status", type=int, default=None)
    a("--fail-first", type=int, default=None, help="first N attempts of each distinct body fail")
    a("--cut-rate", type=float, default=None, help="close connections without a response")
    a("--stream-cut-rate", type=float, default=None)
    a("--malformed-rate", type=float, default=None)
    a("--wrong-content-type-rate", type=float, default=None)
    a("--slow-body", type=float, default=None, help="trickle bodies over this many seconds")
    a("--quota-block-seconds", type=float, default=None)
    g = p.add_mutually_exclusive_group()
    g.add_argument("--api-key", default=None, help="required key (visible in ps; prefer --api-key-env)")
    g.add_argument("--api-key-env", default=None, metavar="VAR", help="read the required key from $VAR")
    a("--bearer-token", action="append", default=None, dest="bearer_tokens", help="accepted Bearer token (repeat)")
    a("--expired-token", action="append", default=None, dest="expired_tokens", help="expired Bearer token (repeat)")
    a("--deployments", default=None, help="comma-separated deployment names")
    a("--strict-models", action="store_true", default=None, help="unknown model/deployment -> 404")
    a("--seed", type=int, default=None)
    a("--lifetime", type=float, default=None, help="stop after this many seconds")
    a("--config-stdin", action="store_true", help=argparse.SUPPRESS)
    return p


_SIMPLE = ("latency", "token_delay", "rpm", "rpm_window", "tpm", "fail_rate", "fail_status", "fail_first",
           "cut_rate", "stream_cut_rate", "malformed_rate", "wrong_content_type_rate", "slow_body",
           "quota_block_seconds", "bearer_tokens", "expired_tokens", "deployments", "strict_models", "seed")


def options_from_args(args: argparse.Namespace) -> dict[str, Any]:
    opts: dict[str, Any] = {}
    for k in _SIMPLE:
        v = getattr(args, k)
        if v is not None:
            opts[k] = v
    if args.api_key is not None:
        opts["api_key"] = args.api_key
    elif args.api_key_env:
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
            try:
                while sys.stdin.buffer.read(65536):
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
