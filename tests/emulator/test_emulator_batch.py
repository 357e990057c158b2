"""The emulator's Files and Batch APIs: shapes the OpenAI SDK reads, the fast clock, validation,
and the faults (failing lines, expiry, pending files, refused embeddings), on every route kind."""

from __future__ import annotations

import io
import json
import time

import httpx
import pytest

from foundry_magics.emulator import Emulator
from foundry_magics.emulator.app import App

pytestmark = pytest.mark.timeout(60)

from batch_helpers import FAST, emu  # noqa: E402,F401 - emu is a fixture


@pytest.fixture
def api(emu):
    emu.configure(**FAST)
    with httpx.Client(base_url=emu.url + "/openai/v1", timeout=10) as client:
        yield client
    emu.configure(**FAST)


def chat_line(cid: str, text: str, model: str = "gpt-4o-mini", url: str = "/v1/chat/completions") -> dict:
    return {"custom_id": cid, "method": "POST", "url": url,
            "body": {"model": model, "messages": [{"role": "user", "content": text}]}}


def jsonl(lines: list[dict]) -> bytes:
    return b"".join(json.dumps(x).encode() + b"\n" for x in lines)


def upload(api: httpx.Client, content: bytes, purpose: str = "batch") -> dict:
    r = api.post("/files", data={"purpose": purpose}, files={"file": ("in.jsonl", io.BytesIO(content))})
    assert r.status_code == 200, r.text
    return r.json()


def run_to_end(api: httpx.Client, bid: str, timeout: float = 5.0) -> dict:
    deadline = time.monotonic() + timeout
    seen = []
    while True:
        b = api.get(f"/batches/{bid}").json()
        if not seen or seen[-1] != b["status"]:
            seen.append(b["status"])
        if b["status"] in ("completed", "failed", "expired", "cancelled") or time.monotonic() > deadline:
            b["_seen"] = seen
            return b
        time.sleep(0.01)


def lines_of(api: httpx.Client, fid: str | None) -> list[dict]:
    if not fid:
        return []
    r = api.get(f"/files/{fid}/content")
    assert r.status_code == 200
    return [json.loads(x) for x in r.content.splitlines() if x.strip()]


def test_a_batch_runs_through_its_states_and_answers_as_online(api):
    f = upload(api, jsonl([chat_line(f"c{i}", f"Summarize: item {i}") for i in range(5)]))
    assert f["object"] == "file" and f["purpose"] == "batch" and f["status"] == "processed" and f["bytes"] > 0
    b = api.post("/batches", json={"input_file_id": f["id"], "endpoint": "/chat/completions",
                                   "completion_window": "24h", "metadata": {"k": "v"}}).json()
    assert b["object"] == "batch" and b["status"] == "validating" and b["metadata"] == {"k": "v"}
    end = run_to_end(api, b["id"])
    assert end["status"] == "completed" and end["_seen"][-1] == "completed"
    assert end["request_counts"] == {"total": 5, "completed": 5, "failed": 0} and end["error_file_id"] is None
    out = {x["custom_id"]: x for x in lines_of(api, end["output_file_id"])}
    assert set(out) == {f"c{i}" for i in range(5)}
    online = api.post("/chat/completions", json=chat_line("x", "Summarize: item 3")["body"]).json()
    assert out["c3"]["response"]["status_code"] == 200
    assert out["c3"]["response"]["body"]["choices"][0]["message"]["content"] == online["choices"][0]["message"]["content"]
    listed = api.get("/batches", params={"limit": 100}).json()
    assert listed["object"] == "list" and end["id"] in [x["id"] for x in listed["data"]]
    assert api.delete(f"/files/{f['id']}").json()["deleted"] is True
    assert api.get(f"/files/{f['id']}").status_code == 404


def test_responses_and_embeddings_batches(api):
    f = upload(api, jsonl([{"custom_id": "r1", "method": "POST", "url": "/v1/responses",
                            "body": {"model": "gpt-4o-mini", "input": "Name a colour"}}]))
    b = api.post("/batches", json={"input_file_id": f["id"], "endpoint": "/v1/responses",
                                   "completion_window": "24h"}).json()
    out = lines_of(api, run_to_end(api, b["id"])["output_file_id"])
    assert out[0]["response"]["body"]["object"] == "response"
    f = upload(api, jsonl([{"custom_id": "e1", "method": "POST", "url": "/embeddings",
                            "body": {"model": "text-embedding-3-small", "input": ["hello"]}}]))
    b = api.post("/batches", json={"input_file_id": f["id"], "endpoint": "/embeddings",
                                   "completion_window": "24h"}).json()
    out = lines_of(api, run_to_end(api, b["id"])["output_file_id"])
    assert len(out[0]["response"]["body"]["data"][0]["embedding"]) == 64


def test_validation_failures_are_listed_with_their_lines(api):
    bad = jsonl([chat_line("a", "x"), chat_line("a", "y"), chat_line("b", "z", model="gpt-4.1-mini"),
                 chat_line("c", "w", url="/v1/embeddings")]) + b"not json\n"
    f = upload(api, bad)
    b = api.post("/batches", json={"input_file_id": f["id"], "endpoint": "/chat/completions",
                                   "completion_window": "24h"}).json()
    end = run_to_end(api, b["id"])
    assert end["status"] == "failed" and end["failed_at"]
    errors = {(e["line"], e["code"]) for e in end["errors"]["data"]}
    assert {(2, "duplicate_custom_id"), (3, "mismatched_model"), (4, "mismatched_endpoint"),
            (5, "invalid_json_line")} <= errors


def test_create_refuses_what_azure_refuses(api, emu):
    f = upload(api, jsonl([chat_line("a", "x")]))
    r = api.post("/batches", json={"input_file_id": f["id"], "endpoint": "/chat/completions",
                                   "completion_window": "1h"})
    assert r.status_code == 400 and "completion_window" in r.text
    r = api.post("/batches", json={"input_file_id": f["id"], "endpoint": "/images", "completion_window": "24h"})
    assert r.status_code == 400 and "endpoint" in r.text
    assert api.post("/batches", json={"input_file_id": "file-nope", "endpoint": "/chat/completions",
                                      "completion_window": "24h"}).status_code == 404
    r = api.post("/files", data={"purpose": "nonsense"}, files={"file": ("x.jsonl", b"{}\n")})
    assert r.status_code == 400 and "purpose" in r.text
    assert api.post("/files", content=b"{}", headers={"content-type": "application/json"}).status_code == 400


def test_a_pending_file_cannot_carry_a_batch_until_it_is_processed(api, emu):
    emu.configure(file_pending_seconds=0.3)
    f = upload(api, jsonl([chat_line("a", "x")]))
    assert f["status"] == "pending"
    r = api.post("/batches", json={"input_file_id": f["id"], "endpoint": "/chat/completions",
                                   "completion_window": "24h"})
    assert r.status_code == 400 and "'pending' state" in r.json()["error"]["message"]
    time.sleep(0.35)
    assert api.get(f"/files/{f['id']}").json()["status"] == "processed"
    assert api.post("/batches", json={"input_file_id": f["id"], "endpoint": "/chat/completions",
                                      "completion_window": "24h"}).status_code == 200


def test_failing_lines_go_to_the_error_file(api, emu):
    emu.configure(batch_fail_rate=1.0)
    f = upload(api, jsonl([chat_line(f"c{i}", f"q {i}") for i in range(4)] + [chat_line("d", "x #emulator:status=400")]))
    b = api.post("/batches", json={"input_file_id": f["id"], "endpoint": "/chat/completions",
                                   "completion_window": "24h"}).json()
    end = run_to_end(api, b["id"])
    assert end["status"] == "completed" and end["output_file_id"] is None
    assert end["request_counts"] == {"total": 5, "completed": 0, "failed": 5}
    errs = {x["custom_id"]: x["response"]["status_code"] for x in lines_of(api, end["error_file_id"])}
    assert errs == {"c0": 500, "c1": 500, "c2": 500, "c3": 500, "d": 400}


def test_expiry_keeps_the_lines_done_and_cancel_too(api, emu):
    emu.configure(batch_expire=1, batch_seconds=0.2)
    f = upload(api, jsonl([chat_line(f"c{i}", f"q {i}") for i in range(20)]))
    b = api.post("/batches", json={"input_file_id": f["id"], "endpoint": "/chat/completions",
                                   "completion_window": "24h"}).json()
    end = run_to_end(api, b["id"])
    assert end["status"] == "expired" and end["expired_at"]
    done = lines_of(api, end["output_file_id"])
    assert 0 < len(done) < 20 and end["request_counts"]["completed"] == len(done)
    assert emu._app.opts["batch_expire"] == 0  # one expiry asked for, one used: the app counts down
    b2 = api.post("/batches", json={"input_file_id": f["id"], "endpoint": "/chat/completions",
                                    "completion_window": "24h"}).json()
    assert run_to_end(api, b2["id"])["status"] == "completed"  # the next one runs normally
    emu.configure(batch_seconds=1.0)
    b3 = api.post("/batches", json={"input_file_id": f["id"], "endpoint": "/chat/completions",
                                    "completion_window": "24h"}).json()
    time.sleep(0.3)
    assert api.post(f"/batches/{b3['id']}/cancel").json()["status"] == "cancelling"
    end3 = run_to_end(api, b3["id"])
    assert end3["status"] == "cancelled" and len(lines_of(api, end3["output_file_id"])) < 20


def test_refused_embeddings_fail_validation(api, emu):
    emu.configure(batch_refuse_embeddings=True)
    f = upload(api, jsonl([{"custom_id": "e", "method": "POST", "url": "/v1/embeddings",
                            "body": {"model": "text-embedding-3-small", "input": ["x"]}}]))
    b = api.post("/batches", json={"input_file_id": f["id"], "endpoint": "/v1/embeddings",
                                   "completion_window": "24h"}).json()
    end = run_to_end(api, b["id"])
    assert end["status"] == "failed" and "not supported" in end["errors"]["data"][0]["message"]


def test_every_route_kind_has_the_apis_and_legacy_needs_its_version(emu):
    content = jsonl([chat_line("a", "x", url="/chat/completions")])
    for root, params in (("/openai/v1", {}), ("/v1", {}), ("/openai", {"api-version": "2024-10-21"}),
                         ("/api/projects/p/openai/v1", {})):
        with httpx.Client(base_url=emu.url + root, params=params, timeout=10) as c:
            f = c.post("/files", data={"purpose": "batch"}, files={"file": ("in.jsonl", content)})
            assert f.status_code == 200, (root, f.text)
            b = c.post("/batches", json={"input_file_id": f.json()["id"], "endpoint": "/chat/completions",
                                         "completion_window": "24h"})
            assert b.status_code == 200 and c.get(f"/batches/{b.json()['id']}").json()["id"] == b.json()["id"]
    with httpx.Client(base_url=emu.url + "/openai", timeout=10) as c:
        assert c.get("/batches").status_code == 404  # the legacy data plane needs ?api-version=
        assert c.put("/batches", params={"api-version": "2024-10-21"}).status_code == 405


def test_a_key_is_required_when_the_emulator_has_one():
    with Emulator(api_key="k-123", lifetime=60, **FAST) as e:
        with httpx.Client(base_url=e.url + "/openai/v1", timeout=10) as c:
            assert c.get("/batches").status_code == 401
            assert c.get("/batches", headers={"api-key": "k-123"}).status_code == 200


def test_the_openai_sdk_reads_the_files_and_batch_apis(emu):
    openai = pytest.importorskip("openai")
    emu.configure(**FAST)
    client = openai.OpenAI(base_url=emu.url + "/openai/v1", api_key="unused", max_retries=0)
    f = client.files.create(file=("in.jsonl", jsonl([chat_line("a", "Say hi"), chat_line("b", "Say bye")])),
                            purpose="batch")
    assert f.id.startswith("file-") and f.purpose == "batch"
    b = client.batches.create(input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="24h")
    deadline = time.monotonic() + 5
    while b.status not in ("completed", "failed") and time.monotonic() < deadline:
        time.sleep(0.02)
        b = client.batches.retrieve(b.id)
    assert b.status == "completed" and b.request_counts.completed == 2
    text = client.files.content(b.output_file_id).text
    assert {json.loads(x)["custom_id"] for x in text.splitlines()} == {"a", "b"}
    assert b.id in [x.id for x in client.batches.list(limit=100).data]
    client.close()


def test_options_are_in_the_table_and_coerced():
    app = App(batch_seconds="0.5", batch_expire=2, batch_fail_rate=0.1)
    assert app.opts["batch_seconds"] == 0.5 and app.opts["batch_expire"] == 2
    assert App().opts["batch_seconds"] == 2.0 and App().opts["file_pending_seconds"] == 0.0
