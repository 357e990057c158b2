"""How many requests/s the emulator sustains.

Starts the emulator in its own process (as the benchmarks do) and drives it with a lean
raw-asyncio keep-alive client (prebuilt request bytes, minimal response parsing), so the
client is not the bottleneck. Prints one line per scenario.

    python benchmarks/emulator_load.py [--seconds 3] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from foundry_magics.emulator import Emulator  # noqa: E402


def build_request(host: str, path: str, body: dict) -> bytes:
    data = json.dumps(body).encode()
    head = (f"POST {path} HTTP/1.1\r\nhost: {host}\r\ncontent-type: application/json\r\n"
            f"api-key: bench\r\ncontent-length: {len(data)}\r\n\r\n").encode()
    return head + data


class _Client(asyncio.Protocol):
    """One keep-alive connection sending `request` back to back, counting responses."""

    def __init__(self, requests: list[bytes], deadline: float, done: asyncio.Future, offset: int = 0) -> None:
        self.requests = requests
        self.i = offset % len(requests)
        self.request = requests[self.i]
        self.deadline = deadline
        self.done = done
        self.buf = bytearray()
        self.count = 0
        self.errors = 0
        self.transport = None
        self.chunked_end = b"0\r\n\r\n"

    def connection_made(self, transport) -> None:
        self.transport = transport
        transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        while True:
            i = buf.find(b"\r\n\r\n")
            if i < 0:
                return
            head = bytes(buf[:i]).lower()
            j = head.find(b"content-length: ")
            if j >= 0:
                n = int(head[j + 16: head.find(b"\r\n", j) if head.find(b"\r\n", j) > 0 else None])
                if len(buf) < i + 4 + n:
                    return
                del buf[: i + 4 + n]
            else:  # chunked (streaming): wait for the terminating chunk
                k = buf.find(self.chunked_end, i + 4)
                if k < 0:
                    return
                del buf[: k + 5]
            if not head.startswith(b"http/1.1 200"):
                self.errors += 1
            self.count += 1
            if time.perf_counter() < self.deadline:
                self.i += 1
                self.transport.write(self.requests[self.i % len(self.requests)])
            else:
                self.transport.close()
                return

    def connection_lost(self, exc) -> None:
        if not self.done.done():
            self.done.set_result(None)


async def drive(url: str, path: str, body: dict | list[dict], conns: int, seconds: float) -> tuple[float, int, int]:
    hostport = url.split("//", 1)[1]
    host, port = hostport.rsplit(":", 1)
    reqs = [build_request(hostport, path, b) for b in (body if isinstance(body, list) else [body])]
    loop = asyncio.get_running_loop()
    start = time.perf_counter()
    deadline = start + seconds
    protos = []
    waits = []
    for c in range(conns):
        fut = loop.create_future()
        _, p = await loop.create_connection(lambda f=fut, c=c: _Client(reqs, deadline, f, c * 7919), host, int(port))
        protos.append(p)
        waits.append(fut)
    await asyncio.wait_for(asyncio.gather(*waits), seconds + 30)
    elapsed = time.perf_counter() - start
    n = sum(p.count for p in protos)
    return n / elapsed, n, sum(p.errors for p in protos)


CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Say hello to the benchmark."}]}
STREAM = dict(CHAT, stream=True, stream_options={"include_usage": True})
DISTINCT = [{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": f"Summarize row {i}: the customer "
             f"wrote that delivery number {i * 31} was late but the support team was helpful."}]} for i in range(5000)]
EMBED = {"model": "text-embedding-3-small", "input": ["the quick brown fox"] * 16}


def scenarios(quick: bool):
    yield "chat      latency 0    conns 1  ", 0.0, "/openai/v1/chat/completions", CHAT, 1
    yield "chat      latency 0    conns 16 ", 0.0, "/openai/v1/chat/completions", CHAT, 16
    yield "chat      latency 0    conns 64 ", 0.0, "/openai/v1/chat/completions", CHAT, 64
    yield "chat 5000 distinct prompts conns 16", 0.0, "/openai/v1/chat/completions", DISTINCT, 16
    yield "stream    latency 0    conns 16 ", 0.0, "/openai/v1/chat/completions", STREAM, 16
    if not quick:
        yield "responses latency 0    conns 16 ", 0.0, "/openai/v1/responses", {"model": "gpt-4o-mini", "input": "hi"}, 16
        yield "embed16   latency 0    conns 16 ", 0.0, "/openai/v1/embeddings", EMBED, 16
    yield "chat      latency 0.2  conns 64 ", 0.2, "/openai/v1/chat/completions", CHAT, 64
    yield "chat      latency 0.2  conns 256", 0.2, "/openai/v1/chat/completions", CHAT, 256


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args(argv)
    print(f"{'scenario':34s} {'req/s':>9s} {'ideal':>9s} {'requests':>9s} {'errors':>7s}")
    for name, latency, path, body, conns in scenarios(args.quick):
        with Emulator(process=True, latency=latency, api_key="bench", lifetime=args.seconds + 60) as emu:
            rate, n, errors = asyncio.run(drive(emu.url, path, body, conns, args.seconds))
        ideal = f"{conns / latency:9.0f}" if latency else "        -"
        print(f"{name:34s} {rate:9.0f} {ideal} {n:9d} {errors:7d}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
