"""Routing, auth, api-version checks, rate limits, faults, directives and stats.

``App.handle(request) -> Reply`` is synchronous and cheap; the server does the waiting.

Usage, as Azure reports it (`usage` of every chat / Responses reply, streamed or not, and of
Batch API result lines):

* prompt tokens: the prompt's characters / 4 (`brain.count_tokens`), completion tokens: the
  reply's words (one stream token each) plus the reasoning tokens;
* cached tokens (a part of the prompt tokens): when a prompt of at least 1,024 tokens starts
  with a prefix this emulator already saw in its life (for the same model: the same system
  prompt and the same start of the messages), that shared prefix, rounded down to a multiple
  of 128 tokens (`PrefixCache`); 0 the first time;
* reasoning tokens (a part of the completion tokens): for reasoning models (names starting
  o1, o3, o4, ..., gpt-5, but not gpt-5-chat), 64 x (1 + crc32(prompt) mod 8): 64 to 512, the
  same for the same prompt (`brain.reasoning_tokens`). They come first within max_tokens: a
  cap smaller than reasoning + reply cuts the visible reply (finish "length").
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections import OrderedDict, deque
from typing import Any, Callable
from urllib.parse import parse_qs

from . import agents, batches, brain, jobs, operators, packing, shapes
from .faults import Faults, RateLimiter, retry_headers
from .jobs import JSON_CT, Fail, err
from .options import DEFAULTS, coerce as coerce_options
from .routes import API_VERSION, OPNAMES, POST_OPS, Route, normalize_deployments, resolve
from .wire import Reply, Request

SSE_HEADERS = [("content-type", "text/event-stream"), ("cache-control", "no-cache")]
CONTEXT_WINDOW = 128_000

OPTIONS = frozenset(DEFAULTS)  # the table in options.py


class PrefixCache:
    """Azure's prompt caching, emulated: digests of every prompt prefix of 1,024 tokens or more,
    at 128-token boundaries (512 characters), per model. `cached(model, prompt)` is the longest
    such prefix seen before (0 if none), and remembers this prompt's prefixes. Deterministic:
    it depends only on the prompts sent before, in order."""

    MAX = 200_000  # prefixes remembered; past it the cache starts afresh (as a real one evicts)

    def __init__(self) -> None:
        self.seen: set[bytes] = set()

    def cached(self, model: str | None, prompt: str) -> int:
        block = brain.CACHE_BLOCK * brain.CHARS_PER_TOKEN
        first = brain.CACHE_MIN // brain.CACHE_BLOCK
        blocks = len(prompt) // block
        if blocks < first:
            return 0
        h = hashlib.blake2b((model or "").encode("utf-8", "surrogatepass") + b"\0", digest_size=16)
        cached, hit, new = 0, True, []
        for b in range(blocks):
            h.update(prompt[b * block:(b + 1) * block].encode("utf-8", "surrogatepass"))
            if b + 1 < first:
                continue
            d = h.digest()  # (does not end the hash: the next block goes on from here)
            if hit and d in self.seen:
                cached = (b + 1) * brain.CACHE_BLOCK
            else:
                hit = False
                new.append(d)
        if len(self.seen) + len(new) > self.MAX:
            self.seen.clear()
        self.seen.update(new)
        return cached


class App:
    def __init__(self, **options: Any) -> None:
        self.opts: dict[str, Any] = dict(DEFAULTS)
        self.limiter = RateLimiter(None, None)
        self.faults = Faults(0)
        self.project = agents.Project()  # agents and conversations (emulator/agents.py)
        self.gateway = agents.Gateway()  # API Management's token-limit policy, when configured
        self.batches = batches.BatchesAPI(self)  # the Files and Batch APIs (emulator/batches.py)
        self.store: OrderedDict[str, dict] = OrderedDict()
        self.store_max = 10_000
        self.reply_cache: dict[tuple, tuple[str, list[str]]] = {}
        self.prefixes = PrefixCache()  # prompt caching: lives as long as the emulator (not reset with stats)
        self.requests: deque = deque(maxlen=1000)
        self.on_shutdown: Callable[[], Any] | None = None  # POST /_emulator/shutdown (the embedding code sets it)
        self._routes: dict[str, Route | None] = {}
        self.in_flight = 0
        self.open_conns = 0
        self.reset_stats()
        self.configure(**options)

    # ------------------------------------------------------------------ config & stats
    def configure(self, **options: Any) -> dict:
        unknown = set(options) - OPTIONS
        if unknown:
            raise TypeError(f"unknown emulator option(s): {', '.join(sorted(unknown))}")
        self.opts.update(coerce_options(options))
        o = self.opts
        self.deployments = normalize_deployments(o["deployments"])
        self.dep_names = {d["name"]: d for d in self.deployments}
        self.keys = {o["api_key"]} if o["api_key"] else set()
        self.tokens = set(o["bearer_tokens"])
        self.expired = set(o["expired_tokens"])
        self.open_auth = not self.keys and not self.tokens
        if {"rpm", "tpm", "rpm_window"} & set(options) or not options:
            self.limiter.configure(o["rpm"], o["tpm"], o["rpm_window"])
        if "seed" in options:
            self.faults.seed(int(o["seed"] or 0))
        return self.public_options()

    def public_options(self) -> dict:
        o = dict(self.opts)
        o["api_key"] = "***" if o["api_key"] else None
        o["bearer_tokens"] = ["***"] * len(o["bearer_tokens"])
        o["expired_tokens"] = ["***"] * len(o["expired_tokens"])
        o["deployments"] = [d["name"] for d in self.deployments]
        return o

    def reset_stats(self) -> None:
        self.n_requests = 0
        self.by_route: dict[str, int] = {}
        self.by_status: dict[str, int] = {}
        self.faults_hit: dict[str, int] = {}
        self.tok_prompt = 0
        self.tok_completion = 0
        self.tok_cached = 0
        self.tok_reasoning = 0
        self.bodies: set[int] = set()
        self.max_in_flight = self.in_flight
        self.total_conns = self.open_conns
        self.started = time.time()
        self.requests.clear()
        if hasattr(self, "faults"):
            self.faults.reset()
            self.limiter.configure(self.opts["rpm"], self.opts["tpm"], self.opts["rpm_window"])
        if hasattr(self, "gateway"):
            self.gateway.reset()

    def stats(self) -> dict:
        return {
            "requests": self.n_requests, "by_route": dict(self.by_route), "by_status": dict(self.by_status),
            "tokens": {"prompt": self.tok_prompt, "completion": self.tok_completion,
                       "total": self.tok_prompt + self.tok_completion,
                       "cached": self.tok_cached, "reasoning": self.tok_reasoning},
            "faults": dict(self.faults_hit), "distinct_bodies": len(self.bodies),
            "in_flight": self.in_flight, "max_in_flight": self.max_in_flight,
            "connections": {"open": self.open_conns, "total": self.total_conns},
            "uptime": round(time.time() - self.started, 3),
        }

    def on_connection(self, delta: int) -> None:
        self.open_conns += delta
        if delta > 0:
            self.total_conns += 1

    def on_done(self) -> None:
        self.in_flight -= 1

    def _count(self, key: str, status: int) -> None:
        self.by_route[key] = self.by_route.get(key, 0) + 1
        s = str(status)
        self.by_status[s] = self.by_status.get(s, 0) + 1

    def _fault(self, name: str) -> None:
        self.faults_hit[name] = self.faults_hit.get(name, 0) + 1

    # ------------------------------------------------------------------ entry point
    def handle(self, req: Request) -> Reply:
        self.in_flight += 1
        if self.in_flight > self.max_in_flight:
            self.max_in_flight = self.in_flight
        path = req.path
        if "/_emulator/" in path:
            return self._admin(req)
        if req.method == "OPTIONS":
            return Reply(204, [("access-control-allow-origin", "*"),
                               ("access-control-allow-methods", "GET, POST, OPTIONS"),
                               ("access-control-allow-headers", "*"), ("access-control-max-age", "600")])
        self.n_requests += 1
        if path in self._routes:
            route = self._routes[path]
        else:
            route = agents.resolve(path) or resolve(path)
            if len(self._routes) > 4096:
                self._routes.clear()
            self._routes[path] = route
        key = f"{route.kind}:{route.op}" if route else "unknown"
        try:
            reply = self._handle(req, route)
        except Fail as f:
            reply = f.reply
        if reply.drop:
            self._fault("cut")
        else:
            self._count(key, reply.status)
        if "origin" in req.headers:
            reply.headers.append(("access-control-allow-origin", "*"))
        return reply

    def _handle(self, req: Request, route: Route | None) -> Reply:
        body: Any = None
        if req.body:
            try:
                body = json.loads(req.body)
            except ValueError:
                body = _INVALID
        if self.opts["record_requests"]:
            self.requests.append((req.method, req.target, dict(req.headers), None if body is _INVALID else body))
        if route is None:
            return err(404, shapes.status_error_body(404))
        if route.kind == "agents":  # agents and conversations: emulator/agents.py
            self._auth(req)
            return agents.handle(self, req, route, body)
        if route.op in batches.OPS:  # the Files and Batch APIs: emulator/batches.py
            self._auth(req)
            return self.batches.handle(req, route)
        want = "POST" if route.op in POST_OPS else "GET"
        if req.method != want:
            r = err(405, shapes.error_body("405", "Method Not Allowed"))
            r.headers.append(("allow", want))
            return r
        self._auth(req)
        version = None
        if route.version_required or req.query:
            version = parse_qs(req.query).get("api-version", [None])[0] if req.query else None
            if route.version_required:
                if not version:
                    if route.kind == "foundry-models" or route.op == "deployments":
                        raise Fail(err(400, shapes.error_body(
                            "MissingApiVersionParameter",
                            "The api-version query parameter (?api-version=) is required for all requests.")))
                    raise Fail(err(404, shapes.status_error_body(404)))
                if not API_VERSION.match(version):
                    raise Fail(err(400, shapes.error_body("BadRequest", "API version not supported")))
        delay = self.opts["latency"]
        op = route.op
        if op == "models":
            openai_shape = route.kind in ("openai-v1", "openai-compatible") or (
                route.kind == "foundry-project" and not route.version_required)
            body_out = shapes.openai_models(self.deployments) if openai_shape else shapes.azure_models(self.deployments)
            return Reply(200, [JSON_CT], body_out, delay=delay)
        if op == "deployments":
            return Reply(200, [JSON_CT], shapes.project_deployments(self.deployments), delay=delay)
        if op == "info":
            q = parse_qs(req.query)
            name = (q.get("model") or [req.headers.get("x-ms-model-mesh-model-name", "")])[0]
            dep = self.dep_names.get(name) or next((d for d in self.deployments if d["kind"] == "chat"),
                                                   self.deployments[0])
            return Reply(200, [JSON_CT], shapes.model_info(dep), delay=delay)
        if op == "responses.get":
            rec = self.store.get(str(route.arg or ""))
            if rec is None:
                return err(404, shapes.invalid_request(f"Response with id '{route.arg}' not found."), delay=delay)
            return Reply(200, [JSON_CT], shapes.dumps(rec["response"]), delay=delay)
        # ---- inference
        if body is _INVALID or not isinstance(body, dict):
            raise Fail(err(400, shapes.invalid_request(
                "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your "
                "HTTP library correctly. The OpenAI API expects a JSON payload, "
                "but what was sent was not valid JSON.)")))
        prepared = agents.prepare(self, body) if op == "responses" else None  # an agent, a conversation
        model = route.arg if route.kind == "azure-deployment" else body.get("model")
        if not model and prepared:
            model = agents.model_of(prepared)
        if not model:
            if route.model_required:
                raise Fail(err(400, shapes.invalid_request("you must provide a model parameter", None)))
            want_kind = "embeddings" if op == "embeddings" else "chat"
            model = next((d["name"] for d in self.deployments if d["kind"] == want_kind), self.deployments[0]["name"])
        model = str(model)
        if self.opts["strict_models"] and model not in self.dep_names:
            raise Fail(err(404, shapes.error_body(
                "DeploymentNotFound", "The API deployment for this resource does not exist. If you created the "
                "deployment within the last 5 minutes, please wait a moment and try again.")))
        if op == "chat.completions":
            job = jobs.chat_job(body, model)
        elif op == "responses":
            job = jobs.responses_job(body, model, self.store)
            if prepared:
                agents.extend_job(job, prepared, body)
        else:
            job = jobs.embeddings_job(body, model)
        return self._run(req, route, version, job, delay)

    # ------------------------------------------------------------------ auth
    def _auth(self, req: Request) -> None:
        h = req.headers
        auth = h.get("authorization", "")
        bearer = auth[7:].strip() if auth[:7].lower() == "bearer " else None
        if bearer is not None and bearer in self.expired:
            raise Fail(err(401, shapes.error_body(
                "ExpiredAuthenticationToken",
                "The access token has expired. Unauthorized. Access token is missing, invalid, audience is "
                "incorrect (https://cognitiveservices.azure.com), or have expired."),
                [("www-authenticate", 'Bearer error="invalid_token", error_description="The access token expired"')]))
        if self.open_auth:
            return
        keys = self.keys
        if keys:
            k = h.get("api-key")
            if k is not None and k in keys:
                return
            k = h.get("ocp-apim-subscription-key")
            if k is not None and k in keys:
                return
        if bearer is not None and (bearer in keys or bearer in self.tokens):
            return
        if bearer is not None and (bearer.count(".") == 2 or not keys):
            raise Fail(err(401, shapes.error_body(
                "401", "Unauthorized. Access token is missing, invalid, audience is incorrect "
                "(https://cognitiveservices.azure.com), or have expired.")))
        raise Fail(err(401, shapes.status_error_body(401)))

    # ------------------------------------------------------------------ jobs
    # ------------------------------------------------------------------ limits, faults, directives, reply
    def _run(self, req: Request, route: Route, version: str | None, job: dict, delay: float) -> Reply:
        o = self.opts
        api = job["api"]
        if api == "embeddings":
            ptoks = shapes.embedding_tokens(job["texts"])
        else:  # a continued response is billed for the whole conversation so far
            ptoks = max(1, brain.count_tokens(job["prompt"])) + job.get("prev_context", 0)
        opname = OPNAMES[route.op]
        ver = version or "v1"
        if self.gateway.active(o):  # API Management in front: its token-limit policy answers first
            self.gateway.check(o, req)
        if o["quota_block_seconds"]:
            secs = float(o["quota_block_seconds"])
            self._fault("quota_block")
            raise Fail(err(429, shapes.error_body("429", (
                f"Requests to the {opname} Operation under Azure OpenAI API version {ver} have exceeded the "
                f"quota of your current pricing tier. Please retry after {int(math.ceil(secs))} seconds. Please go "
                "here: https://aka.ms/oai/quotaincrease "
                "if you would like to further increase the default rate limit.")),
                retry_headers(secs)))
        rl_headers: list[tuple[str, str]] = []
        if self.limiter.active:
            estimate = ptoks + (job.get("max_tokens") or 0)
            kind, wait = self.limiter.acquire(estimate)
            rem_r, rem_t = self.limiter.remaining()
            if rem_r is not None:
                rl_headers.append(("x-ratelimit-remaining-requests", str(rem_r)))
            if rem_t is not None:
                rl_headers.append(("x-ratelimit-remaining-tokens", str(rem_t)))
            if kind is not None:
                self._fault("rate_limited")
                what = "call rate limit" if kind == "requests" else "token rate limit"
                raise Fail(err(429, shapes.error_body("429", (
                    f"Requests to the {opname} Operation under Azure OpenAI API version {ver} have exceeded {what} "
                    f"of your current AIServices S0 pricing tier. Please retry after {max(1, int(math.ceil(wait)))} "
                    "seconds. Please go here: https://aka.ms/oai/quotaincrease if you would like to further "
                    "increase the default rate limit.")), retry_headers(wait) + rl_headers))
        # directives
        last = job["last"]
        dirs = brain.directives(last) if "#emulator:" in last else {}
        if "delay" in dirs:
            try:
                delay += max(0.0, float(dirs["delay"]))
            except ValueError:
                pass
        # random / scripted faults (after the gateway, before the model)
        faults = self.faults
        if faults.hit(o["cut_rate"]):
            return Reply(200, [], drop=True, delay=delay)
        if o["fail_first"] and faults.first_attempts(hash(req.body), o["fail_first"]):
            self._fault("fail_first")
            return self._failure(o["fail_status"], rl_headers, delay)
        if faults.hit(o["fail_rate"]):
            self._fault("fail")
            return self._failure(o["fail_status"], rl_headers, delay)
        if faults.hit(o["malformed_rate"]):
            self._fault("malformed")
            broken = b'{"id":"chatcmpl-broken","object":"chat.completion","choices":[{"ind'
            return Reply(200, [JSON_CT] + rl_headers, broken, delay=delay)
        if faults.hit(o["wrong_content_type_rate"]):
            self._fault("wrong_content_type")
            return Reply(200, [("content-type", "text/html; charset=utf-8")] + rl_headers,
                         b"<!DOCTYPE html><html><head><title>Sign in</title></head><body><h1>Gateway</h1>"
                         b"<p>This page is served by a proxy, not by the model (emulated).</p></body></html>",
                         delay=delay)
        if dirs:
            if "content_filter" in dirs:
                return err(400, shapes.content_filter_body(), rl_headers, delay=delay)
            if "context_length" in dirs:
                return err(400, shapes.context_length_body(CONTEXT_WINDOW, CONTEXT_WINDOW + ptoks,
                                                            "messages" if api == "chat" else "input"),
                            rl_headers, delay=delay)
            if "status" in dirs:
                try:
                    st = int(dirs["status"])
                except ValueError:
                    st = 500
                if not 200 <= st <= 599:
                    st = 500
                return self._failure(st, rl_headers, delay)
        window = operators.context_window(job.get("model")) if api != "embeddings" else CONTEXT_WINDOW
        if ptoks + (job.get("max_tokens") or 0) > window and api != "embeddings":
            return err(400, shapes.context_length_body(window, ptoks + (job.get("max_tokens") or 0),
                                                        "messages" if api == "chat" else "input"),
                        rl_headers, delay=delay)
        if api == "embeddings":
            self.gateway.consume(o, req, ptoks)
            self.tok_prompt += ptoks
            self.bodies.add(hash(req.body))
            return Reply(200, [JSON_CT] + rl_headers,
                         shapes.embeddings_body(job["model"], job["texts"], job["dims"], job["b64"]),
                         delay=delay, slow_body=o["slow_body"])
        return self._generate(req, job, dirs, ptoks, rl_headers, delay)

    @staticmethod
    def _failure(status: int, rl_headers: list, delay: float) -> Reply:
        extra = retry_headers(1.0) if status == 429 else []  # Azure always says when to come back
        return err(status, shapes.status_error_body(status), extra + rl_headers, delay=delay)

    def _reply_for(self, job: dict) -> tuple[str, list[str]]:
        if job["mode"] == "json_schema" and "\n\nITEMS:\n" in job["last"]:  # several rows: emulator/packing.py
            packed = packing.reply(self, job)
            if packed is not None:
                return packed, brain.tokens(packed)
        last = brain.strip_directives(job["last"])
        schema = job["schema"]
        model = job["model"] if brain.weakness(job["model"]) else None  # weaker models answer otherwise
        key = (job["mode"], last, job["system"], job["turn"], job["first"],
               json.dumps(schema, sort_keys=True) if schema is not None else None, model)
        hit = self.reply_cache.get(key)
        if hit is not None:
            return hit
        if job["mode"] == "json_schema":
            text = brain.dumps(brain.json_for_schema(schema, last, model))
        elif job["mode"] == "json_object":
            text = brain.dumps(brain.json_object_reply(last))
        else:
            text = brain.reply_text(last, system=brain.strip_directives(job["system"]), turn=job["turn"],
                                    first_user=brain.strip_directives(job["first"]), model=model)
        hit = (text, brain.tokens(text))
        if len(self.reply_cache) > 20_000:
            self.reply_cache.clear()
        self.reply_cache[key] = hit
        return hit

    def usage_of(self, job: dict, text: str, toks: list[str], ptoks: int,
                 filtered: bool) -> tuple[str, list[str], str, tuple[int, int, int, int]]:
        """(text, stream tokens, finish reason, (prompt, completion, cached, reasoning) tokens) of
        a generated reply, counted (see the module doc), within max_tokens; remembers the prompt's
        prefixes for the prompt caching of later requests."""
        finish = "stop"
        reasoning = brain.reasoning_tokens(job["model"], job["prompt"])
        mt = job["max_tokens"]
        if filtered:
            toks = toks[: max(1, len(toks) // 2)]
            finish = "content_filter"
        elif mt is not None and len(toks) + reasoning > mt:
            reasoning = min(reasoning, mt)  # the reasoning comes first; the reply gets what is left
            toks = toks[: mt - reasoning]
            finish = "length"
        if finish != "stop":
            text = "".join(toks)
        cached = min(ptoks, self.prefixes.cached(job["model"], job["prompt"]))
        ctoks = len(toks) + reasoning
        self.tok_prompt += ptoks
        self.tok_completion += ctoks
        self.tok_cached += cached
        self.tok_reasoning += reasoning
        return text, toks, finish, (ptoks, ctoks, cached, reasoning)

    def _generate(self, req: Request, job: dict, dirs: dict, ptoks: int, rl_headers: list, delay: float) -> Reply:
        o = self.opts
        text, toks = self._reply_for(job)
        tool_items: list[dict[str, Any]] = []
        annotations: list[dict[str, Any]] = []
        if job.get("agent"):
            text, tool_items, annotations = agents.agent_reply(job, text)
            toks = brain.tokens(text)
        filtered = "filter_completion" in dirs
        text, toks, finish, usage = self.usage_of(job, text, toks, ptoks, filtered)
        ctoks = usage[1]
        self.gateway.consume(o, req, ptoks + ctoks)
        self.bodies.add(hash(req.body))
        stream = job["stream"]
        cut = stream and ("stream_cut" in dirs or self.faults.hit(o["stream_cut_rate"]))
        if cut:
            self._fault("stream_cut")
        if job["api"] == "chat":
            if not stream:
                body = shapes.chat_completion(job["model"], text, finish, usage, filtered=filtered)
                if "stream_cut" in dirs:
                    return Reply(200, [JSON_CT] + rl_headers, body, delay=delay, cut_after=0)
                return Reply(200, [JSON_CT] + rl_headers, body, delay=delay, slow_body=o["slow_body"])
            chunks = shapes.chat_chunks(job["model"], toks, finish,
                                        usage if job["include_usage"] else None, filtered=filtered)
            return Reply(200, SSE_HEADERS + rl_headers, chunks=chunks, delay=delay, chunk_delay=self._pace(len(chunks)),
                         cut_after=(2 + max(1, len(toks) // 2)) if cut else None)
        # Responses API
        rid = shapes.new_id("resp_")
        status = "completed"
        incomplete = None
        if finish == "length":
            status, incomplete = "incomplete", "max_output_tokens"
        elif finish == "content_filter":
            status, incomplete = "incomplete", "content_filter"
        resp = shapes.response_object(
            rid, job["model"], text, status=status, incomplete=incomplete, usage=usage,
            instructions=job["instructions"], previous=job["previous"], max_output=job["max_tokens"],
            fmt=job["fmt"], store=job["store"], msg_id=shapes.new_id("msg_"), created=int(time.time()),
            metadata=job["metadata"])
        if job.get("agent") or job.get("conversation"):
            agents.decorate(self, job, resp, tool_items, annotations)
        if job["store"]:
            self.store[rid] = {"turn": job["turn"], "first": job["first"] or job["last"],
                               "context": ptoks + ctoks, "response": resp}
            if len(self.store) > self.store_max:
                self.store.popitem(last=False)
        if not stream:
            body = shapes.dumps(resp)
            if "stream_cut" in dirs:
                return Reply(200, [JSON_CT] + rl_headers, body, delay=delay, cut_after=0)
            return Reply(200, [JSON_CT] + rl_headers, body, delay=delay, slow_body=o["slow_body"])
        events = agents.response_events(resp, toks) if job.get("agent") else shapes.response_events(resp, toks)
        return Reply(200, SSE_HEADERS + rl_headers, chunks=events, delay=delay, chunk_delay=self._pace(len(events)),
                     cut_after=(4 + max(1, len(toks) // 2)) if cut else None)

    def _pace(self, n: int) -> float:
        o = self.opts
        pace = o["token_delay"]
        if o["slow_body"] > 0 and n > 1:
            pace = max(pace, o["slow_body"] / (n - 1))
        return pace

    # ------------------------------------------------------------------ admin
    def _admin(self, req: Request) -> Reply:
        name = req.path.rsplit("/_emulator/", 1)[1].strip("/")
        if name == "health":
            return Reply(200, [JSON_CT], b'{"status":"ok","service":"foundry-emulator"}')
        if name == "stats":
            return Reply(200, [JSON_CT], shapes.dumps(self.stats()))
        if name == "reset" and req.method == "POST":
            self.reset_stats()
            return Reply(200, [JSON_CT], b'{"ok":true}')
        if name == "config":
            if req.method == "GET":
                return Reply(200, [JSON_CT], shapes.dumps(self.public_options()))
            try:
                opts = json.loads(req.body or b"{}")
                if not isinstance(opts, dict):
                    raise TypeError("expected a JSON object")
                public = self.configure(**opts)
            except (TypeError, ValueError) as e:
                return err(400, shapes.error_body("BadRequest", str(e)))
            return Reply(200, [JSON_CT], shapes.dumps({"ok": True, "options": public}))
        if name == "shutdown" and req.method == "POST" and self.on_shutdown is not None:
            self.on_shutdown()
            return Reply(200, [JSON_CT], b'{"ok":true}', close=True)
        return err(404, shapes.status_error_body(404))


_INVALID = object()
