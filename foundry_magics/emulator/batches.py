"""The emulator's Files and Batch APIs: upload JSONL, create a batch, watch it run on a fast clock, read the results.

    POST   {root}/files              multipart: purpose=batch, file=@input.jsonl
    GET    {root}/files/{id}         status "pending" for `file_pending_seconds`, then "processed"
    GET    {root}/files/{id}/content the bytes (input, output or error file)
    DELETE {root}/files/{id}
    POST   {root}/batches            {"input_file_id", "endpoint", "completion_window": "24h"}
    GET    {root}/batches[/{id}]     validating -> in_progress -> finalizing -> completed
    POST   {root}/batches/{id}/cancel

`root` is any route the inference API has: /openai/v1, /v1, /openai?api-version=...,
/api/projects/P/openai/v1. A batch takes `batch_seconds` of wall time (the fast clock):
validation in its first tenth (a bad line, a duplicate custom_id, mixed deployments or
endpoints fail it with readable `errors`), its lines answered progressively until nine
tenths, then finalizing. Each line is answered by the same deterministic model as an online
request (directives such as `#emulator:status=400` included), so a batch result equals the
online reply. Faults: `batch_fail_rate` (lines into the error file), `batch_expire` (the next
N batches expire half-way, with partial output), `file_pending_seconds` (creating a batch on
a pending file fails with the service's "pending" error), `batch_refuse_embeddings`.

Everything is kept in memory, state is lost when the emulator stops (a real service keeps it).
"""

from __future__ import annotations

import json
import time
from collections import OrderedDict
from typing import Any
from urllib.parse import parse_qs

from foundry_magics.defaults import BATCH_COMPLETION_WINDOW, BATCH_MAX_LINES

from . import brain, jobs, shapes
from .jobs import JSON_CT, Fail, err
from .routes import API_VERSION, Route
from .wire import Reply, Request, uuid4_hex

__all__ = ["BatchesAPI", "OPS"]

OPS = frozenset({"files", "files.one", "files.content", "batches", "batches.one", "batches.cancel"})
ENDPOINTS = ("/chat/completions", "/responses", "/embeddings")
MAX_LINES = BATCH_MAX_LINES  # Azure's limits, as the client splits by them
MAX_ERRORS = 20  # validation errors listed per batch
MAX_KEPT = 2_000  # files / batches kept; the oldest go first
_METHODS = {"files": ("GET", "POST"), "files.one": ("GET", "DELETE"), "files.content": ("GET",),
            "batches": ("GET", "POST"), "batches.one": ("GET",), "batches.cancel": ("POST",)}
_PURPOSES = frozenset({"batch", "fine-tune", "assistants", "vision", "user_data", "evals"})


def _endpoint(url: Any) -> str | None:
    """"/v1/chat/completions" and "/chat/completions" alike -> "/chat/completions"."""
    if not isinstance(url, str):
        return None
    path = url.split("?", 1)[0].rstrip("/")
    if path.startswith("/v1/"):
        path = path[3:]
    return path if path in ENDPOINTS else None


def _invalid(message: str, param: str | None = None, code: str = "invalid_request_error",
             status: int = 400) -> Fail:
    return Fail(err(status, shapes.error_body(code, message, param=param, type="invalid_request_error")))


class BatchesAPI:
    """Files and batches of one emulator (`App.batches`)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.files: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self.batches: OrderedDict[str, dict[str, Any]] = OrderedDict()

    # ------------------------------------------------------------------ entry point
    def handle(self, req: Request, route: Route) -> Reply:
        try:
            if route.version_required:
                version = parse_qs(req.query).get("api-version", [None])[0] if req.query else None
                if not version:
                    return err(404, shapes.status_error_body(404))
                if not API_VERSION.match(version):
                    return err(400, shapes.error_body("BadRequest", "API version not supported"))
            allowed = _METHODS[route.op]
            if req.method not in allowed:
                r = err(405, shapes.error_body("405", "Method Not Allowed"))
                r.headers.append(("allow", ", ".join(allowed)))
                return r
            delay = self.app.opts["latency"]
            reply = getattr(self, "_" + route.op.replace(".", "_") + "_" + req.method.lower())(req, route.arg)
            reply.delay = max(reply.delay, delay)
            return reply
        except Fail as f:
            return f.reply

    # ------------------------------------------------------------------ files
    def _files_post(self, req: Request, _arg: Any) -> Reply:
        import email.parser
        import email.policy

        ctype = req.headers.get("content-type", "")
        if "multipart/form-data" not in ctype.lower():
            raise _invalid("Uploads are multipart/form-data with the fields 'purpose' and 'file'.", "file")
        msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
            b"Content-Type: " + ctype.encode("latin-1") + b"\r\n\r\n" + req.body)
        fields: dict[Any, Any] = {}
        filename = None
        for part in msg.iter_parts() if msg.is_multipart() else ():
            name = part.get_param("name", header="content-disposition")
            if name == "file":
                filename = part.get_filename() or "upload.jsonl"
            fields[name] = part.get_payload(decode=True) or b""
        purpose = (fields.get("purpose") or b"").decode("utf-8", "replace").strip()
        if "file" not in fields:
            raise _invalid("Missing required parameter: 'file'.", "file", "missing_required_parameter")
        if purpose not in _PURPOSES:
            raise _invalid(f"Invalid value for 'purpose': {purpose!r}. Use 'batch' for Batch API input files.",
                           "purpose")
        return self._json(200, self._add_file(fields["file"], filename or "upload.jsonl", purpose))

    def _add_file(self, content: bytes, filename: str, purpose: str) -> dict[str, Any]:
        now = time.time()
        fid = "file-" + uuid4_hex()
        pending = self.app.opts["file_pending_seconds"] if purpose == "batch" else 0.0
        rec = {"id": fid, "object": "file", "bytes": len(content), "created_at": int(now), "filename": filename,
               "purpose": purpose, "_content": content, "_ready_at": now + float(pending or 0.0)}
        self.files[fid] = rec
        while len(self.files) > MAX_KEPT:
            self.files.popitem(last=False)
        return self._file_object(rec)

    @staticmethod
    def _file_object(rec: dict[str, Any]) -> dict[str, Any]:
        out = {k: v for k, v in rec.items() if not k.startswith("_")}
        out["status"] = "processed" if time.time() >= rec["_ready_at"] else "pending"
        out["status_details"] = None
        return out

    def _file(self, fid: Any) -> dict[str, Any]:
        rec = self.files.get(fid or "")
        if rec is None:
            raise _invalid(f"No such File object: {fid}", "file_id", "not_found", status=404)
        return rec

    def _files_get(self, req: Request, _arg: Any) -> Reply:
        q = parse_qs(req.query)
        purpose = q["purpose"][0] if q.get("purpose") else None
        data = [self._file_object(r) for r in reversed(self.files.values()) if not purpose or r["purpose"] == purpose]
        return self._json(200, {"object": "list", "data": data, "has_more": False})

    def _files_one_get(self, req: Request, fid: Any) -> Reply:
        return self._json(200, self._file_object(self._file(fid)))

    def _files_one_delete(self, req: Request, fid: Any) -> Reply:
        self._file(fid)
        del self.files[fid]
        return self._json(200, {"id": fid, "object": "file", "deleted": True})

    def _files_content_get(self, req: Request, fid: Any) -> Reply:
        rec = self._file(fid)
        return Reply(200, [("content-type", "application/octet-stream")], rec["_content"])

    # ------------------------------------------------------------------ batches
    def _batches_post(self, req: Request, _arg: Any) -> Reply:
        try:
            body = json.loads(req.body or b"{}")
        except ValueError:
            raise _invalid("We could not parse the JSON body of your request.") from None
        if not isinstance(body, dict):
            raise _invalid("The body must be a JSON object.")
        fid = body.get("input_file_id")
        if not fid:
            raise _invalid("Missing required parameter: 'input_file_id'.", "input_file_id",
                           "missing_required_parameter")
        rec = self._file(fid)
        if rec["purpose"] != "batch":
            raise _invalid(f"The file {fid} has purpose {rec['purpose']!r}; a batch needs purpose 'batch'.",
                           "input_file_id")
        if time.time() < rec["_ready_at"]:  # the quirk: a batch on a file still being processed fails
            raise _invalid(f"The input file {fid} is in 'pending' state. Wait until it is processed, then create "
                           "the batch again.", "input_file_id", "invalid_request")
        endpoint = _endpoint(body.get("endpoint"))
        if endpoint is None:
            raise _invalid(f"Invalid value for 'endpoint': {body.get('endpoint')!r}. Use one of "
                           f"{', '.join(ENDPOINTS)} (with or without /v1).", "endpoint")
        if body.get("completion_window") != BATCH_COMPLETION_WINDOW:
            raise _invalid(f"Invalid value for 'completion_window': {body.get('completion_window')!r}. Only "
                           f"{BATCH_COMPLETION_WINDOW!r} is supported.", "completion_window")
        meta = body.get("metadata")
        now = time.time()
        o = self.app.opts
        expire = int(o["batch_expire"] or 0) > 0
        if expire:
            o["batch_expire"] = int(o["batch_expire"]) - 1
        bid = "batch_" + uuid4_hex()
        b = {
            "id": bid, "object": "batch", "endpoint": body.get("endpoint"), "errors": None, "input_file_id": fid,
            "completion_window": BATCH_COMPLETION_WINDOW, "status": "validating",
            "output_file_id": None, "error_file_id": None,
            "created_at": int(now), "in_progress_at": None, "expires_at": int(now) + 86_400, "finalizing_at": None,
            "completed_at": None, "failed_at": None, "expired_at": None, "cancelling_at": None, "cancelled_at": None,
            "request_counts": {"total": 0, "completed": 0, "failed": 0},
            "metadata": meta if isinstance(meta, dict) else None,
            "_t0": now, "_seconds": max(0.0, float(o["batch_seconds"])), "_expire": expire, "_endpoint": endpoint,
            "_lines": None, "_done": 0, "_ok": [], "_bad": [], "_cancel_at": None,
        }
        self.batches[bid] = b
        while len(self.batches) > MAX_KEPT:
            self.batches.popitem(last=False)
        self._advance(b)
        return self._json(200, self._batch_object(b))

    def _batch(self, bid: Any) -> dict[str, Any]:
        b = self.batches.get(bid or "")
        if b is None:
            raise _invalid(f"No such batch: {bid}", "batch_id", "not_found", status=404)
        return b

    def _batches_get(self, req: Request, _arg: Any) -> Reply:
        q = parse_qs(req.query)
        try:
            limit = max(1, min(100, int((q.get("limit") or ["20"])[0])))
        except ValueError:
            limit = 20
        after = q["after"][0] if q.get("after") else None
        items = list(reversed(self.batches.values()))
        if after and after in self.batches:
            ids = [b["id"] for b in items]
            items = items[ids.index(after) + 1:]
        page = items[:limit]
        for b in page:
            self._advance(b)
        data = [self._batch_object(b) for b in page]
        return self._json(200, {"object": "list", "data": data, "first_id": data[0]["id"] if data else None,
                                "last_id": data[-1]["id"] if data else None, "has_more": len(items) > limit})

    def _batches_one_get(self, req: Request, bid: Any) -> Reply:
        b = self._batch(bid)
        self._advance(b)
        return self._json(200, self._batch_object(b))

    def _batches_cancel_post(self, req: Request, bid: Any) -> Reply:
        b = self._batch(bid)
        self._advance(b)
        if b["status"] in ("validating", "in_progress", "finalizing"):
            now = time.time()
            b["status"] = "cancelling"
            b["cancelling_at"] = int(now)
            b["_cancel_at"] = now + b["_seconds"] * 0.1
        return self._json(200, self._batch_object(b))

    # ------------------------------------------------------------------ the fast clock
    def _advance(self, b: dict[str, Any]) -> None:
        """Bring a batch to where its clock says it is: validate, answer lines, finalize."""
        status = b["status"]
        if status in ("completed", "failed", "expired", "cancelled"):
            return
        now = time.time()
        dur = b["_seconds"]
        frac = 1.0 if dur <= 0 else (now - b["_t0"]) / dur
        if status == "cancelling":
            if now >= (b["_cancel_at"] or now):
                self._end(b, "cancelled", now)
            return
        if status == "validating":
            if frac < 0.1:
                return
            problems = self._validate(b)
            if problems:
                b["status"] = "failed"
                b["failed_at"] = int(now)
                b["errors"] = {"object": "list", "data": problems}
                b["_lines"] = None
                return
            b["status"] = "in_progress"
            b["in_progress_at"] = int(now)
        lines = b["_lines"]
        total = len(lines)
        share = 1.0 if dur <= 0 else min(1.0, max(0.0, (frac - 0.1) / 0.8))
        if b["_expire"]:
            share = min(share, 0.5)
        self._answer(b, int(total * share))
        if b["_expire"] and (dur <= 0 or (frac - 0.1) / 0.8 >= 0.5):
            self._end(b, "expired", now)
            return
        if b["_done"] >= total:
            if b["status"] == "in_progress":
                b["status"] = "finalizing"
                b["finalizing_at"] = int(now)
            if frac >= 1.0:
                self._end(b, "completed", now)

    def _validate(self, b: dict[str, Any]) -> list[dict[str, Any]]:
        content = self.files.get(b["input_file_id"], {}).get("_content")
        if content is None:
            return [{"code": "file_not_found", "message": f"The input file {b['input_file_id']} was deleted.",
                     "param": "input_file_id", "line": None}]
        lines = [ln for ln in content.split(b"\n") if ln.strip()]
        problems: list[dict[str, Any]] = []

        def bad(n: int | None, code: str, message: str, param: str | None = None) -> None:
            if len(problems) < MAX_ERRORS:
                problems.append({"code": code, "message": message, "param": param, "line": n})

        if not lines:
            bad(None, "empty_file", "The input file is empty.")
        if len(lines) > MAX_LINES:
            bad(None, "too_many_lines", f"The input file has {len(lines):,} lines; at most {MAX_LINES:,} are allowed.")
        if b["_endpoint"] == "/embeddings" and self.app.opts["batch_refuse_embeddings"]:
            bad(None, "unsupported_endpoint", "The /embeddings endpoint is not supported by the Batch API for this "
                "deployment.", "endpoint")
        seen: set[str] = set()
        model = None
        for n, raw in enumerate(lines, 1):
            if len(problems) >= MAX_ERRORS:
                break
            try:
                d = json.loads(raw)
            except ValueError:
                bad(n, "invalid_json_line", "This line is not valid JSON.")
                continue
            if not isinstance(d, dict):
                bad(n, "invalid_json_line", "This line is not a JSON object.")
                continue
            cid = d.get("custom_id")
            if not isinstance(cid, str) or not cid:
                bad(n, "missing_required_parameter", "The line has no 'custom_id'.", "custom_id")
            elif cid in seen:
                bad(n, "duplicate_custom_id", f"The custom_id {cid!r} is used by an earlier line.", "custom_id")
            else:
                seen.add(cid)
            if str(d.get("method", "")).upper() != "POST":
                bad(n, "invalid_method", "The method of a line must be POST.", "method")
            if _endpoint(d.get("url")) != b["_endpoint"]:
                bad(n, "mismatched_endpoint", f"The url {d.get('url')!r} does not match the batch's endpoint "
                    f"{b['endpoint']!r}.", "url")
            body = d.get("body")
            if not isinstance(body, dict):
                bad(n, "invalid_body", "The line has no JSON object 'body'.", "body")
                continue
            m = body.get("model")
            if not m:
                bad(n, "missing_model", "The body of every line must name the Global-Batch deployment ('model').",
                    "body.model")
            elif model is None:
                model = m
            elif m != model:
                bad(n, "mismatched_model", f"Every line must target the same deployment: {m!r} differs from "
                    f"{model!r}.", "body.model")
        b["request_counts"]["total"] = len(lines)
        b["_lines"] = lines if not problems else None
        return problems

    def _answer(self, b: dict[str, Any], upto: int) -> None:
        lines = b["_lines"]
        while b["_done"] < upto:
            ok, out = self._line(b, lines[b["_done"]])
            (b["_ok"] if ok else b["_bad"]).append(out)
            b["_done"] += 1
        b["request_counts"]["completed"] = len(b["_ok"])
        b["request_counts"]["failed"] = len(b["_bad"])

    def _end(self, b: dict[str, Any], status: str, now: float) -> None:
        if b["_lines"] is not None:
            b["request_counts"]["completed"] = len(b["_ok"])
            b["request_counts"]["failed"] = len(b["_bad"])
        if b["_ok"]:
            b["output_file_id"] = self._add_file(b"".join(b["_ok"]), f"{b['id']}_output.jsonl", "batch_output")["id"]
        if b["_bad"]:
            b["error_file_id"] = self._add_file(b"".join(b["_bad"]), f"{b['id']}_error.jsonl", "batch_output")["id"]
        b["status"] = status
        b[{"completed": "completed_at", "expired": "expired_at", "cancelled": "cancelled_at"}[status]] = int(now)
        b["_lines"] = None
        b["_ok"] = b["_bad"] = []

    # ------------------------------------------------------------------ one line
    def _line(self, b: dict[str, Any], raw: bytes) -> tuple[bool, bytes]:
        d = json.loads(raw)
        cid = d["custom_id"]
        body = d["body"]
        endpoint = b["_endpoint"]
        model = str(body.get("model"))
        app = self.app
        try:
            if endpoint == "/chat/completions":
                job = jobs.chat_job(body, model)
            elif endpoint == "/responses":
                job = jobs.responses_job(body, model, app.store)
            else:
                job = jobs.embeddings_job(body, model)
        except Fail as f:
            return False, self._out(cid, f.reply.status, f.reply.body)
        if job.get("stream"):
            return False, self._out(cid, 400, shapes.invalid_request("Streaming is not supported in a batch.",
                                                                     "stream"))
        dirs = brain.directives(job["last"]) if "#emulator:" in job["last"] else {}
        if "status" in dirs:
            try:
                st = int(dirs["status"])
            except ValueError:
                st = 500
            st = st if 400 <= st <= 599 else 500
            return False, self._out(cid, st, shapes.status_error_body(st))
        if "content_filter" in dirs:
            return False, self._out(cid, 400, shapes.content_filter_body())
        if app.faults.hit(app.opts["batch_fail_rate"]):
            app._fault("batch_line_failed")
            return False, self._out(cid, 500, shapes.status_error_body(500))
        if endpoint == "/embeddings":
            app.tok_prompt += shapes.embedding_tokens(job["texts"])
            return True, self._out(cid, 200, shapes.embeddings_body(job["model"], job["texts"], job["dims"],
                                                                    job["b64"]))
        text, toks = app._reply_for(job)
        filtered = "filter_completion" in dirs
        ptoks = max(1, brain.count_tokens(job["prompt"]))
        text, toks, finish, usage = app.usage_of(job, text, toks, ptoks, filtered)  # as online (app.py)
        if endpoint == "/chat/completions":
            out = shapes.chat_completion(job["model"], text, finish, usage, filtered=filtered)
        else:
            status, incomplete = "completed", None
            if finish == "length":
                status, incomplete = "incomplete", "max_output_tokens"
            elif finish == "content_filter":
                status, incomplete = "incomplete", "content_filter"
            out = shapes.dumps(shapes.response_object(
                shapes.new_id("resp_"), job["model"], text, status=status, incomplete=incomplete,
                usage=usage, instructions=job["instructions"], previous=job["previous"],
                max_output=job["max_tokens"], fmt=job["fmt"], store=False, msg_id=shapes.new_id("msg_"),
                created=int(time.time()), metadata=job["metadata"]))
        return True, self._out(cid, 200, out)

    @staticmethod
    def _out(cid: str, status: int, body: bytes) -> bytes:
        rid = uuid4_hex()
        return (b'{"id":"batch_req_' + rid[:24].encode() + b'","custom_id":' + json.dumps(cid).encode()
                + b',"response":{"status_code":' + str(status).encode() + b',"request_id":"' + rid.encode()
                + b'","body":' + body + b'},"error":null}\n')

    # ------------------------------------------------------------------ shapes
    @staticmethod
    def _batch_object(b: dict[str, Any]) -> dict[str, Any]:
        return {k: (dict(v) if isinstance(v, dict) else v) for k, v in b.items() if not k.startswith("_")}

    @staticmethod
    def _json(status: int, obj: Any) -> Reply:
        return Reply(status, [JSON_CT], shapes.dumps(obj))
