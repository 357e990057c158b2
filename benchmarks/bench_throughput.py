"""DataFrame prompts at 200 ms service latency: rows/s against the ceiling and against peers.

Ceiling = concurrency / latency (64 / 0.2 s = 320 rows/s, 256 / 0.2 s = 1,280). Row counts are
multiples of the concurrency, so the ceiling is reachable with zero client overhead (n / c
rounds of 200 ms). The emulator runs in its own process on 127.0.0.1; every contender gets a
warm-up first (imports, the server's code paths) and then sends distinct prompts, timed from
the call to the last result. Client CPU is time.process_time() of this process (all its
threads) per 1,000 rows. The graded contenders (ours, raw aiohttp, and the OpenAI SDK at
concurrency 64) run TRIALS times, round-robin, so a burst of load from elsewhere on the
(shared) box hits them alike; each figure is its best rate and its lowest CPU over its trials.
Peers shown for scale run once; with --quick the CPU-bound ones (the OpenAI SDK and LiteLLM at
256, httpx's own pool) on 4 rounds of rows, as their rate does not depend on the row count.

Contenders, all sending the same chat request (`{"model", "messages": [{"role": "user",
"content": "Summarize: <text>"}]}` to `<url>/openai/v1/chat/completions`):

* ours: `df.foundry.prompt` (the engine, its transport, the cache, the progress bookkeeping);
* raw aiohttp, the library limit: one bare `aiohttp.ClientSession` (TCPConnector(limit=c)) +
  a semaphore + `asyncio.gather`, reading `json()` and `choices[0].message.content`;
* the OpenAI SDK (`AsyncOpenAI` + `asyncio.gather` + a semaphore);
* LiteLLM (`acompletion`, same pattern) when installed;
* httpx on httpx-aiohttp's `AiohttpTransport` (same pattern as raw aiohttp) when installed;
* one pooled `httpx.AsyncClient` on httpx's own transport (same pattern; with --quick only at
  concurrency 64: it costs ~10 CPU s per 1,000 rows);
* a plain sequential loop with `FoundryClient` (a few rows, extrapolated).

Only public API of the package is used (`df.foundry.prompt`, `fm.last_run()`,
`foundry_magics.connections.Connection`, `fm.FoundryClient`, `foundry_magics.emulator`), so the
figures stay comparable across refactors of the engine's HTTP path.

    python benchmarks/bench_throughput.py [--quick]
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

LATENCY = 0.2
MODEL = "gpt-4o-mini"
TRIALS = 2

OURS = "ours: df.foundry.prompt"
RAW = "raw aiohttp ClientSession + semaphore"
OPENAI = "OpenAI SDK + asyncio.gather"
LITELLM = "LiteLLM acompletion + gather"
HTTPX_AIOHTTP = "httpx + httpx-aiohttp AiohttpTransport"
HTTPX = "one pooled httpx.AsyncClient"


def _texts(tag: str, n: int) -> list[str]:
    return [f"{tag} review {i}: the kettle boils fast and looks nice" for i in range(n)]


def _body(text: str) -> dict:
    return {"model": MODEL, "messages": [{"role": "user", "content": f"Summarize: {text}"}]}


def _timed(fn):
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - t0, time.process_time() - c0


def _connection(url: str):
    from foundry_magics.connections import Connection

    return Connection.from_url(url + "/openai/v1", kind="emulator", auth="none", model=MODEL)


def ours(url: str, n: int, c: int, tag: str) -> tuple[float, float, int]:
    import pandas as pd

    import foundry_magics as fm

    conn = _connection(url)
    df = pd.DataFrame({"text": _texts(tag, n)})
    out, wall, cpu = _timed(lambda: df.foundry.prompt("Summarize: {text}", connection=conn, concurrency=c,
                                                      progress=False))
    assert fm.last_run().requests == n, (fm.last_run().requests, n)
    return wall, cpu, int(out.notna().sum())


def _gather(open_client, n: int, c: int, tag: str) -> tuple[float, float, int]:
    """`open_client()` (a coroutine, run on the loop as an app would) gives (call, close)."""
    texts = _texts(tag, n)

    async def main():
        call, close = await open_client()
        sem = asyncio.Semaphore(c)

        async def one(t):
            async with sem:
                return await call(t)

        try:
            return await asyncio.gather(*(one(t) for t in texts))
        finally:
            await close()

    out, wall, cpu = _timed(lambda: asyncio.run(main()))
    return wall, cpu, sum(1 for x in out if x)


def raw_aiohttp(url: str, n: int, c: int, tag: str):
    import aiohttp

    endpoint = url + "/openai/v1/chat/completions"

    async def open_client():
        session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=c))

        async def call(t):
            async with session.post(endpoint, json=_body(t)) as r:
                r.raise_for_status()
                data = await r.json()
            return data["choices"][0]["message"]["content"]

        return call, session.close

    return _gather(open_client, n, c, tag)


def _httpx_client_peer(url: str, n: int, c: int, tag: str, transport_factory=None):
    import httpx

    endpoint = url + "/openai/v1/chat/completions"

    async def open_client():
        if transport_factory is not None:
            client = httpx.AsyncClient(transport=transport_factory(), timeout=60.0)
        else:
            client = httpx.AsyncClient(limits=httpx.Limits(max_connections=c, max_keepalive_connections=c),
                                       timeout=60.0)

        async def call(t):
            r = await client.post(endpoint, json=_body(t))
            r.raise_for_status()
            return r.json()["choices"][0]["message"]["content"]

        return call, client.aclose

    return _gather(open_client, n, c, tag)


def httpx_aiohttp_peer(url: str, n: int, c: int, tag: str):
    import httpx
    import httpx_aiohttp

    # the transport's own default is 100 connections: give it the same pool size as the others
    return _httpx_client_peer(url, n, c, tag, lambda: httpx_aiohttp.AiohttpTransport(
        limits=httpx.Limits(max_connections=c, max_keepalive_connections=c)))


def httpx_pool(url: str, n: int, c: int, tag: str):
    return _httpx_client_peer(url, n, c, tag)


def openai_sdk(url: str, n: int, c: int, tag: str):
    import openai

    async def open_client():
        client = openai.AsyncOpenAI(base_url=url + "/openai/v1", api_key="bench")

        async def call(t):
            r = await client.chat.completions.create(**_body(t))
            return r.choices[0].message.content

        return call, client.close

    return _gather(open_client, n, c, tag)


def litellm_peer(url: str, n: int, c: int, tag: str):
    import litellm

    async def open_client():
        async def call(t):
            r = await litellm.acompletion(model=f"openai/{MODEL}", api_base=url + "/openai/v1", api_key="bench",
                                          messages=_body(t)["messages"])
            return r.choices[0].message.content

        async def close():
            return None

        return call, close

    return _gather(open_client, n, c, tag)


def sequential(url: str, n: int, tag: str):
    import foundry_magics as fm

    conn = _connection(url)

    def loop():
        with fm.FoundryClient(conn) as client:
            return [client.chat(f"Summarize: {t}").text for t in _texts(tag, n)]

    out, wall, cpu = _timed(loop)
    return wall, cpu, len(out)


def _installed(mod: str) -> bool:
    return importlib.util.find_spec(mod) is not None


def _measure(url: str, c: int, contenders: dict) -> dict:
    """name -> {"rate", "cpu_k", "got", "n", "rates", "cpus"} for contenders name -> (fn, trials, rows): each
    warmed up with one round of c rows, then run `trials` times on `rows` rows, round-robin with the
    others; its best rate and its lowest CPU per 1,000 rows."""
    for name, (fn, _, _) in contenders.items():
        fn(url, c, c, f"warm-{name}-{c}")
    got = {name: {"rates": [], "cpus": [], "got": n, "n": n} for name, (_, _, n) in contenders.items()}
    for k in range(max(t for _, t, _ in contenders.values())):
        for name, (fn, trials, n) in contenders.items():
            if k >= trials:
                continue
            wall, cpu, answered = fn(url, n, c, f"{name}-{c}-{k}")
            got[name]["rates"].append(n / wall)
            got[name]["cpus"].append(cpu / n * 1000)
            got[name]["got"] = min(got[name]["got"], answered)
    return {name: dict(g, rate=max(g["rates"]), cpu_k=min(g["cpus"])) for name, g in got.items()}


def _scenario(url: str, n: int, c: int, quick: bool) -> list[dict]:
    assert n % c == 0, "n must be a multiple of c, so that the ceiling is reachable"
    ceiling = c / LATENCY
    label = f"prompt c={c}, {n:,} rows"
    graded = c == 64  # the OpenAI SDK comparison is a target at concurrency 64, for scale at 256
    # Graded comparisons: TRIALS runs each on n rows. Peers shown for scale: one run; with --quick the
    # CPU-bound ones (their rate does not depend on the row count) on 4 rounds of rows.
    few = 4 * c if quick else n
    contenders = {OURS: (ours, TRIALS, n), RAW: (raw_aiohttp, TRIALS, n),
                  OPENAI: (openai_sdk, TRIALS, n) if graded else (openai_sdk, 1, few)}
    optional = {LITELLM: ("litellm", litellm_peer, n if graded else few),
                HTTPX_AIOHTTP: ("httpx_aiohttp", httpx_aiohttp_peer, n)}
    for name, (mod, fn, rows_) in optional.items():
        if _installed(mod):
            contenders[name] = (fn, 1, rows_)
    if not quick or graded:  # httpcore's pool costs ~10 CPU s per 1,000 rows
        contenders[HTTPX] = (httpx_pool, 1, few)
    res = _measure(url, c, contenders)
    me, raw, oai = res[OURS], res[RAW], res[OPENAI]
    rate, cpu_k = me["rate"], me["cpu_k"]
    complete = me["got"] == n  # a run that lost rows meets no target
    rows: list[dict] = []

    def runs(name: str) -> str:
        r = res[name]
        return (f"{r['n']:,} rows, {len(r['rates'])} trial(s): " + ", ".join(f"{x:,.0f}" for x in r["rates"])
                + " rows/s")

    def rate_row(suffix, peer, target="", ok=None, note="", ratio=None):
        r = res.get(peer) if peer else None
        rows.append({
            "name": f"{label}: rows/s {suffix}", "value": round(rate, 1), "unit": "rows/s", "target": target,
            "peer": None if peer is None else peer if r else f"{peer}: skipped (not installed)",
            "peer_value": round(r["rate"], 1) if r else None,
            "ratio": ratio if ratio is not None else (round(rate / r["rate"], 3) if r else None),
            "ok": ok, "note": "; ".join(x for x in (note, f"{peer}: {runs(peer)}" if r else "") if x),
        })

    ceiling_note = (f"ratio = ours / ceiling ({c} / {LATENCY} s = {ceiling:,.0f}); {n:,} rows = {n // c} rounds of "
                    f"{LATENCY} s at {c} in flight; {me['got']:,}/{n:,} rows answered; best of {TRIALS} trials, "
                    f"round-robin with the peers; ours: {runs(OURS)}")
    if graded:
        floor = 0.95 * ceiling
        rate_row("vs ceiling", None, f">= {floor:,.0f} (95% of {ceiling:,.0f})", complete and rate >= floor,
                 ceiling_note, round(rate / ceiling, 3))
    else:
        floor = 0.92 * ceiling
        near = 0.95 * raw["rate"]
        how = ("met: >= 92% of the ceiling" if rate >= floor else
               f"met: within 5% of raw aiohttp ({rate / raw['rate']:.1%} of it)" if rate >= near else
               f"missed: {rate / ceiling:.1%} of the ceiling and {rate / raw['rate']:.1%} of raw aiohttp")
        caps = (f"raw aiohttp itself at {raw['rate'] / ceiling:.1%} of the ceiling"
                + (" (below 92%: the box caps it too)" if raw["rate"] < floor else ""))
        rate_row("vs ceiling", None, f">= {floor:,.0f} (92% of {ceiling:,.0f}) or >= 95% of raw aiohttp",
                 complete and (rate >= floor or rate >= near), f"{how}; {caps}; {ceiling_note}",
                 round(rate / ceiling, 3))
    rate_row("vs raw aiohttp", RAW, "library limit" if graded else "library limit; >= 0.95 is the alt. target",
             note=f"one bare aiohttp.ClientSession(TCPConnector(limit={c})) + asyncio.Semaphore({c}) + gather; POST "
                  "of the same chat body, json(), choices[0].message.content")
    if graded:
        rate_row("vs OpenAI SDK", OPENAI, "ahead of the OpenAI SDK", complete and rate > oai["rate"])
    else:
        rate_row("vs OpenAI SDK", OPENAI, "(for scale)")
    rate_row("vs LiteLLM", LITELLM)
    rate_row("vs httpx+AiohttpTransport", HTTPX_AIOHTTP,
             note=f"httpx.AsyncClient(transport=httpx_aiohttp.AiohttpTransport(limits={c} connections)) + "
                  "semaphore + gather, same requests")
    if HTTPX in res:
        rate_row("vs httpx.AsyncClient", HTTPX,
                 note=f"httpx's own transport (httpcore pool, {c} connections) + semaphore + gather, same requests")
    others = "; ".join(f"{name}: {r['cpu_k']:.3f}" for name, r in res.items() if name not in (OURS, RAW, OPENAI))
    rows.append({
        "name": f"{label}: client CPU/1k rows vs raw aiohttp", "value": round(cpu_k, 3), "unit": "CPU s",
        "target": "<= 3x raw aiohttp", "peer": RAW, "peer_value": round(raw["cpu_k"], 3),
        "ratio": round(cpu_k / raw["cpu_k"], 2), "better": "lower", "ok": cpu_k <= 3 * raw["cpu_k"],
        "note": "ratio = ours / raw aiohttp; process_time of the client process (all threads) / rows * 1000, "
                f"lowest of {TRIALS} trials each; ours " + ", ".join(f"{x:.3f}" for x in me["cpus"])
                + "; raw aiohttp " + ", ".join(f"{x:.3f}" for x in raw["cpus"])
                + (f"; others (CPU s per 1,000 rows): {others}" if others else ""),
    })
    rows.append({
        "name": f"{label}: client CPU/1k rows vs OpenAI SDK", "value": round(cpu_k, 3), "unit": "CPU s",
        "target": "well under 2 s (2 cores shared with the server)", "peer": OPENAI,
        "peer_value": round(oai["cpu_k"], 3), "ratio": None, "better": "lower", "ok": cpu_k < 2.0, "note": "",
    })
    rows[0]["measurements"] = {name: {"rows": r["n"], "trials_rows_per_s": [round(x, 1) for x in r["rates"]],
                                      "trials_cpu_s_per_1k_rows": [round(x, 3) for x in r["cpus"]]}
                               for name, r in res.items()}  # the ceiling row: every run of this scenario
    return rows


def run(quick: bool = False) -> list[dict]:
    from foundry_magics.emulator import Emulator

    os.environ["FOUNDRY_MAGICS_HOME"] = tempfile.mkdtemp(prefix="fm-bench-throughput-")
    rows: list[dict] = []
    with Emulator(latency=LATENCY, process=True, lifetime=900) as emu:
        url = emu.url
        rows += _scenario(url, 1024 if quick else 2048, 64, quick)
        rows += _scenario(url, 2560 if quick else 5120, 256, quick)
        seq_n = 20
        wall, _, _ = sequential(url, seq_n, "seq")
        seq_rate = seq_n / wall
        rows.append({
            "name": f"sequential loop ({seq_n} rows, extrapolated), {int(LATENCY * 1000)} ms latency",
            "value": round(seq_rate, 2), "unit": "rows/s", "target": "", "peer": None, "peer_value": None,
            "ratio": round(seq_rate / (1 / LATENCY), 3),
            "note": f"what one request at a time gives: 2,000 rows would take {2000 / seq_rate / 60:.1f} min",
        })
        rows[0]["note"] += f"; a sequential loop: {seq_rate:.1f} rows/s"
    return rows


if __name__ == "__main__":
    import json

    for r in run(quick="--quick" in sys.argv):
        print(json.dumps(r))
