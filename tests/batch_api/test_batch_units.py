"""The no-I/O pieces of the Batch API: routes per endpoint kind, input lines built from the online
builders, output lines read back, statuses normalised and aggregated, the jobs table."""

from __future__ import annotations

import json

import pytest

from foundry_magics.batch_api.inputs import PartWriter
from foundry_magics.batch_api.state import aggregate
from foundry_magics.connections import Connection
from foundry_magics.errors import BadRequestError, ConfigurationError
from foundry_magics.rest.batches import (
    batch_routes,
    batch_state,
    create_body,
    file_status,
    input_line,
    is_pending_file,
    line_body,
    output_line,
)
from foundry_magics.store.batches import JobStore


@pytest.mark.parametrize("url, files, params, line", [
    ("https://r.openai.azure.com/openai/v1", "https://r.openai.azure.com/openai/v1/files", {}, "/chat/completions"),
    ("https://r.cognitiveservices.azure.com/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21",
     "https://r.cognitiveservices.azure.com/openai/files", {"api-version": "2024-10-21"}, "/chat/completions"),
    ("https://r.services.ai.azure.com/api/projects/p", "https://r.services.ai.azure.com/api/projects/p/openai/v1/files",
     {}, "/chat/completions"),
    ("https://api.openai.com/v1", "https://api.openai.com/v1/files", {}, "/v1/chat/completions"),
])
def test_routes_per_endpoint_kind(url, files, params, line):
    routes = batch_routes(Connection.from_url(url))
    up = routes.upload()
    assert (up.method, up.url, up.params) == ("POST", files, params)
    assert routes.line_url("chat") == line and routes.line_url("embeddings").endswith("/embeddings")
    assert routes.content("file-1").url.endswith("/files/file-1/content")
    assert routes.cancel("b1").method == "POST" and routes.cancel("b1").url.endswith("/batches/b1/cancel")
    assert routes.list(100).params["limit"] == "100"


def test_no_batch_api_on_the_models_endpoint():
    with pytest.raises(ConfigurationError, match="not available") as info:
        batch_routes(Connection.from_url("https://r.services.ai.azure.com/models", model="Phi-4"))
    assert "batch=True" in str(info.value)


def test_lines_are_the_online_bodies_plus_the_deployment_where_the_url_carried_it():
    body = {"messages": [{"role": "user", "content": "héllo"}]}
    assert line_body(body, "gpt-4o")["model"] == "gpt-4o" and "model" not in body
    keep = {"model": "m", "input": "x"}
    assert line_body(keep, "other") is keep
    line = input_line("ab" * 32, "/chat/completions", line_body(body, "gpt-4o"))
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    parsed = json.loads(line)
    assert parsed == {"custom_id": "ab" * 32, "method": "POST", "url": "/chat/completions",
                      "body": {"model": "gpt-4o", "messages": [{"role": "user", "content": "héllo"}]}}
    assert create_body("file-1", "/chat/completions", {"a": "b"}) == {
        "input_file_id": "file-1", "endpoint": "/chat/completions", "completion_window": "24h", "metadata": {"a": "b"}}


def test_statuses_are_read_case_insensitively_with_readable_errors():
    st = batch_state({"id": "b", "status": "In_Progress", "request_counts": {"total": 3, "completed": "2"}})
    assert st.status == "in_progress" and (st.total, st.completed, st.failed) == (3, 2, 0) and not st.terminal
    failed = batch_state({"id": "b", "status": "Failed", "errors": {"data": [
        {"code": "invalid_json_line", "message": "not JSON", "line": 4}, {"message": "too many lines"}]}})
    assert failed.terminal and failed.errors == ["line 4: not JSON (invalid_json_line)", "too many lines"]
    assert file_status({"status": "Pending"}) == "pending" and file_status({}) == "processed"
    assert is_pending_file(BadRequestError("The file file-1 is in 'pending' state.", status=400))
    assert not is_pending_file(BadRequestError("Invalid endpoint.", status=400))


def test_output_lines_ok_failed_and_odd():
    ok = output_line(json.dumps({"custom_id": "k", "response": {"status_code": 200, "body": {"choices": []}},
                                 "error": None}))
    assert (ok.custom_id, ok.status, ok.error) == ("k", 200, None)
    failed = output_line(json.dumps({"custom_id": "k", "response": {"status_code": 500, "body": {
        "error": {"message": "boom"}}}}))
    assert failed.error.startswith("ServerError") and "boom" in failed.error
    top = output_line(json.dumps({"custom_id": "k", "response": None, "error": {"code": "batch_expired",
                                                                                "message": "window over"}}))
    assert "window over" in top.error
    filtered = output_line(json.dumps({"custom_id": "k", "response": {"status_code": 400, "body": {"error": {
        "code": "content_filter", "message": "filtered"}}}}))
    assert filtered.error.startswith("ContentFilterError")
    assert output_line(b"not json").error and output_line(b"[1]").custom_id is None
    as_text = output_line(json.dumps({"custom_id": "k", "response": {"status_code": 200, "body": '{"a": 1}'}}))
    assert as_text.body == {"a": 1}


def test_a_job_of_several_parts_shows_the_least_advanced_or_the_worst_status():
    assert aggregate(["completed", "in_progress"]) == "in_progress"
    assert aggregate(["validating", "finalizing"]) == "validating"
    assert aggregate(["completed", "expired"]) == "expired" and aggregate(["cancelled", "failed"]) == "failed"
    assert aggregate(["completed", "abandoned"]) == "completed" and aggregate(["abandoned"]) == "failed"
    assert aggregate([]) == "completed"


def test_part_writer_splits_and_leaves_nothing_on_disk(tmp_path, monkeypatch):
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    got = []

    def full(part):
        got.append((part.no, part.lines, part.size, len(part.keys), open(part.path, "rb").read().count(b"\n")))

    w = PartWriter("/chat/completions", max_lines=3, max_bytes=10_000, on_full=full)
    for i in range(7):
        w.add(bytes([i]) * 32, {"messages": [{"role": "user", "content": f"m{i}"}]})
    w.close()
    assert [g[1] for g in got] == [3, 3, 1] and all(g[1] == g[3] == g[4] for g in got)
    assert list(tmp_path.iterdir()) == []
    w2 = PartWriter("/chat/completions", max_lines=10, max_bytes=50, on_full=full)
    with pytest.raises(ConfigurationError, match="more than an input file"):
        w2.add(b"k" * 32, {"messages": [{"role": "user", "content": "x" * 100}]})
    w2.discard()
    assert list(tmp_path.iterdir()) == []


def test_the_jobs_table_records_parts_keys_and_reasons(fm_home):
    from foundry_magics.store.db import open_db  # noqa: F401 - migrations run on open

    with JobStore() as store:
        store.add_job("fmb-1", connection="c", conn={"endpoint": "https://x/openai/v1", "kind": "openai-v1"},
                      model="m", op="chat", label="prompt", rows=10)
        store.add_part("fmb-1", 0, input_file_id="file-1", lines=3, size=300, keys=[b"a" * 32, b"b" * 32, b"c" * 32])
        assert store.pending([b"a" * 32, b"z" * 32]) == {b"a" * 32: "fmb-1"}
        store.update_part("fmb-1", 0, batch_id="batch_1", status="completed", completed=2, failed=1)
        assert store.job_of_batch("batch_1") == "fmb-1"
        assert store.finish_part("fmb-1", 0, {b"c" * 32: "ServerError: boom"})
        assert not store.finish_part("fmb-1", 0, {})  # collected once only
        assert store.pending([b"a" * 32, b"c" * 32]) == {}  # collected: no longer pending
        assert store.reasons(["fmb-1"]) == {b"c" * 32: "ServerError: boom"}
        assert store.job("fmb-1")["collected"] and store.jobs()[0]["requests"] == 3
    assert (fm_home / "batches.sqlite").exists()
