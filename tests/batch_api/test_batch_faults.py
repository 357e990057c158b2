"""Every end state of a Batch API job, and nothing lost: failing lines, expiry, cancellation,
validation failures, pending files, 5xx while polling, a 404, Ctrl-C while waiting or
submitting, a kernel that died mid-submission - and never a key on disk."""

from __future__ import annotations

import base64
import json
import time

import httpx
import pandas as pd
import pytest

import foundry_magics as fm
from foundry_magics.batch_api import BatchFailedError, BatchInterrupted, job_rows, jobs as batch_jobs_module, submit
from foundry_magics.connections import Connection
from foundry_magics.emulator import Emulator
from foundry_magics.engine import Batch, RequestSpec
from foundry_magics.errors import ServerError
from foundry_magics.rest.batches import BatchClient
from foundry_magics.store.batches import JobStore

from batch_helpers import FAST, POLL, conn, emu, routes  # noqa: F401 - emu and conn are fixtures

pytestmark = pytest.mark.timeout(60)


def reviews(n: int) -> pd.DataFrame:
    return pd.DataFrame({"text": [f"Review {i}: the parcel came {'late' if i % 3 else 'early'}" for i in range(n)]},
                        index=[f"row{i % 50}" for i in range(n)])


def test_failing_lines_plus_an_expiry_lose_nothing_and_a_rerun_fills_them(conn, emu):
    emu.configure(batch_fail_rate=0.2, batch_expire=1, seed=7)
    df = reviews(200)
    clean = df.foundry.prompt("Summarize: {text}", connection=conn, cache=False, progress=False)  # not cached
    emu.reset_stats()
    job = df.foundry.prompt("Summarize: {text}", batch=True, wait=False, connection=conn, poll_interval=POLL)
    first = job.result()
    report = fm.last_run()
    assert job.status == "expired"
    failed_labels = {label for label, _ in report.failures}
    reasons = " | ".join(r for _, r in report.failures)
    assert first.isna().sum() == report.failed == len(report.failures) > 0
    assert "expired" in reasons and "ServerError" in reasons  # both kinds, each with its reason
    answered = first.notna()
    assert (first[answered] == clean[answered]).all(), "every answer is the one for its own row"
    assert answered.sum() + report.failed == len(df)
    assert report.stopped and "expired" in report.stopped
    # the re-run (faults off) submits exactly the missing rows and fills them
    emu.configure(batch_fail_rate=0.0, batch_expire=0)
    emu.reset_stats()
    again = df.foundry.prompt("Summarize: {text}", batch=True, wait=False, connection=conn, poll_interval=POLL)
    assert again.counts.total == report.failed
    filled = again.result()
    assert filled.notna().all() and (filled == clean).all()
    assert fm.last_run().cache_hits == len(df) - report.failed and failed_labels


def test_error_file_lines_are_na_with_the_reason_of_each(conn, emu):
    s = pd.Series(["fine one", "broken #emulator:status=400", "filtered #emulator:content_filter", "fine two"])
    out = s.foundry.prompt("Echo: {}", batch=True, connection=conn, poll_interval=POLL, progress=False)
    assert out.notna().tolist() == [True, False, False, True]
    reasons = dict(fm.last_run().failures)
    assert "BadRequestError" in reasons[1] and "ContentFilterError" in reasons[2]


def test_a_failed_validation_is_one_readable_error_suggesting_the_online_path(conn, emu):
    emu.configure(batch_refuse_embeddings=True)
    s = pd.Series(["a", "b", "c"])
    with pytest.raises(BatchFailedError) as info:
        s.foundry.embed(batch=True, connection=conn, poll_interval=POLL, progress=False)
    text = str(info.value)
    assert "failed" in text and "not supported" in text and "online" in text and "batch=True" in text
    report = fm.last_run()
    assert report.failed == 3 and all("the batch failed" in r for _, r in report.failures)
    assert job_rows()[0]["status"] == "failed"
    emu.configure(batch_refuse_embeddings=False)
    vecs = s.foundry.embed(batch=True, connection=conn, poll_interval=POLL, progress=False)  # a re-run submits all 3
    assert vecs.map(len).tolist() == [64, 64, 64] and fm.last_run().requests == 3


def test_validation_errors_of_lines_are_listed_with_their_line(emu, conn):
    io = BatchClient(conn)
    path = emu_tmp_file([{"custom_id": "a", "method": "POST", "url": "/v1/chat/completions",
                          "body": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}]}},
                         {"custom_id": "a", "method": "POST", "url": "/v1/chat/completions",
                          "body": {"model": "gpt-4.1-mini", "messages": [{"role": "user", "content": "y"}]}}])
    f = io.upload(path, "bad.jsonl")
    b = io.create(f["id"], "/chat/completions")
    time.sleep(0.05)
    from foundry_magics.rest.batches import batch_state

    st = batch_state(io.batch(b["id"]))
    while not st.terminal:
        time.sleep(0.02)
        st = batch_state(io.batch(b["id"]))
    assert st.status == "failed"
    assert any(e.startswith("line 2:") and "duplicate_custom_id" in e for e in st.errors)
    assert any("same deployment" in e for e in st.errors)
    io.close()


def emu_tmp_file(lines: list[dict]) -> str:
    import tempfile

    fd, path = tempfile.mkstemp(suffix=".jsonl")
    with open(fd, "w") as f:
        for line in lines:
            f.write(json.dumps(line) + "\n")
    return path


def test_cancel_keeps_the_partial_results_and_the_rerun_sends_only_the_rest(conn, emu):
    emu.configure(batch_seconds=1.0)
    df = reviews(100)
    job = df.foundry.prompt("Summarize: {text}", batch=True, wait=False, connection=conn, poll_interval=POLL)
    deadline = time.monotonic() + 5
    while job.refresh().counts.completed < 20 and time.monotonic() < deadline:
        time.sleep(0.05)
    job.cancel()
    assert job.status in ("cancelling", "cancelled")
    out = job.result()
    assert job.status == "cancelled"
    done = int(out.notna().sum())
    assert 20 <= done < 100
    reasons = [r for _, r in fm.last_run().failures]
    assert len(reasons) == 100 - done and all("cancelled" in r for r in reasons)
    emu.configure(batch_seconds=0.1)
    rest = df.foundry.prompt("Summarize: {text}", batch=True, wait=False, connection=conn, poll_interval=POLL)
    assert rest.counts.total == 100 - done
    assert rest.result().notna().all()


def test_a_pending_input_file_is_waited_for_before_the_batch_is_created(conn, emu):
    emu.configure(file_pending_seconds=0.3)
    t0 = time.monotonic()
    out = pd.Series(["x", "y"]).foundry.prompt("Echo {}", batch=True, connection=conn, poll_interval=POLL,
                                               progress=False)
    assert out.notna().all() and time.monotonic() - t0 >= 0.3
    assert routes(emu).get("files.one", 0) >= 2  # it asked for the file's status until it was processed


def test_create_retried_on_the_pending_quirk_when_the_file_status_says_ready(conn, emu, monkeypatch):
    """Some services report the file processed while create still says 'pending': create again."""
    emu.configure(file_pending_seconds=0.2)
    real = BatchClient.upload

    def upload_says_processed(self, path, name):
        f = real(self, path, name)
        return dict(f, status="processed")

    monkeypatch.setattr(BatchClient, "upload", upload_says_processed)
    out = pd.Series(["x"]).foundry.prompt("Echo {}", batch=True, connection=conn, poll_interval=POLL, progress=False)
    assert out.notna().all() and emu.stats()["by_status"].get("400", 0) >= 1


def test_ctrl_c_while_waiting_leaves_the_job_running_and_says_how_to_pick_it_up(conn, emu, capsys, fm_home):
    emu.configure(batch_seconds=0.5)
    df = reviews(30)

    def interrupt(seconds):
        raise KeyboardInterrupt

    with pytest.MonkeyPatch.context() as mp, pytest.raises(BatchInterrupted) as info:
        mp.setattr(batch_jobs_module, "_sleep", interrupt)
        df.foundry.prompt("Summarize: {text}", batch=True, connection=conn, progress=False)
    line = str(info.value)
    job_id = job_rows()[0]["id"]
    assert isinstance(info.value, KeyboardInterrupt) and "\n" not in line
    assert f"fm.BatchJob.attach('{job_id}').wait()" in line and "run the same call again" in line
    assert "keeps running" in line and "fm.batch_jobs()" in line and info.value._render_traceback_() == [line]
    assert capsys.readouterr().out == ""  # said once, by the exception
    assert not job_rows()[0]["collected"]
    uploads = routes(emu).get("files", 0)
    out = df.foundry.prompt("Summarize: {text}", batch=True, connection=conn, poll_interval=POLL, progress=False)
    assert out.notna().all() and routes(emu).get("files", 0) == uploads  # re-attached, nothing submitted


def test_ctrl_c_while_submitting_keeps_the_parts_made_and_the_rerun_submits_the_rest(conn, emu, fm_home):
    real = BatchClient.upload
    calls = []

    def upload(self, path, name):
        calls.append(name)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(self, path, name)

    prompts = [f"Summarize: thing {i}" for i in range(25)]
    batch = Batch(len(prompts), lambda idx: [prompts[i] for i in idx])
    with pytest.MonkeyPatch.context() as mp, pytest.raises(BatchInterrupted) as info:
        mp.setattr(BatchClient, "upload", upload)
        submit(batch, RequestSpec(), connection=conn, poll_interval=POLL, max_lines=10)
    rows = job_rows()
    assert len(rows) == 1 and rows[0]["requests"] == 10  # the first file's batch runs
    assert "10 requests of batch job" in str(info.value) and "run the same call again" in str(info.value)
    job = submit(batch, RequestSpec(), connection=conn, poll_interval=POLL, max_lines=10)
    assert job.ids[0] == rows[0]["id"] and job.counts.total == 10 + 15  # re-attached + the rest
    res = job.result()
    assert not res.errors and all(t is not None for t in res.texts) and res.report.requests == 15


@pytest.mark.parametrize("answered", [False, True], ids=["before-the-service-answered", "answer-lost"])
def test_ctrl_c_between_upload_and_batch_is_kept_and_the_rerun_picks_it_up(conn, emu, fm_home, answered):
    """Uploaded, create not answered (or its answer lost): recorded as interrupted, not failed; the
    same call again creates (or adopts) that batch and submits nothing twice."""
    real = BatchClient.create

    def create(self, *a, **k):
        if answered:
            real(self, *a, **k)
        raise KeyboardInterrupt

    prompts = [f"Summarize: parcel {i}" for i in range(8)]
    batch = Batch(len(prompts), lambda idx: [prompts[i] for i in idx])
    with pytest.MonkeyPatch.context() as mp, pytest.raises(BatchInterrupted) as info:
        mp.setattr(BatchClient, "create", create)
        submit(batch, RequestSpec(), connection=conn, poll_interval=POLL)
    row = job_rows()[0]
    assert row["status"] == "interrupted" and row["requests"] == 8 and not row["batches"]
    assert "8 requests of batch job" in str(info.value) and row["id"] in str(info.value)
    uploads = routes(emu).get("files", 0)
    job = submit(batch, RequestSpec(), connection=conn, poll_interval=POLL)
    assert job.ids == [row["id"]] and routes(emu).get("files", 0) == uploads  # re-attached: no upload
    res = job.result()
    assert not res.errors and all(t is not None for t in res.texts) and res.report.requests == 0
    with JobStore() as store:
        file_id = store.parts(row["id"])[0]["input_file_id"]
    made = [b for b in emu._app.batches.batches.values() if b["input_file_id"] == file_id]
    assert len(made) == 1  # one batch for the file, ever: adopted when the answer was lost
    assert job_rows()[0]["status"] == "completed" and len(job.batch_ids) == 1


def _interrupted_submission(conn, prompts) -> str:
    batch = Batch(len(prompts), lambda idx: [prompts[i] for i in idx])
    with pytest.MonkeyPatch.context() as mp, pytest.raises(BatchInterrupted):
        mp.setattr(BatchClient, "create", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt()))
        submit(batch, RequestSpec(), connection=conn, poll_interval=POLL)
    return job_rows()[0]["id"]


def test_an_interrupted_submission_is_picked_up_by_attach_and_cancel_gives_it_up(conn, emu, fm_home):
    job_id = _interrupted_submission(conn, [f"Summarize: crate {i}" for i in range(4)])
    picked = fm.BatchJob.attach(job_id, connection=conn).wait(poll_interval=POLL)
    assert picked.status == "completed" and picked.done and picked.counts.completed == 4
    job_id = _interrupted_submission(conn, [f"Summarize: box {i}" for i in range(4)])
    second = fm.BatchJob.attach(job_id, connection=conn)
    assert second.status == "interrupted" and not second.done
    second.cancel()
    row = next(r for r in job_rows() if r["id"] == job_id)
    assert second.done and row["status"] == "failed" and row["requests"] == 0


def test_a_submission_whose_kernel_died_is_picked_up_or_given_up(conn, emu, fm_home):
    def dies(self, *a, **k):
        raise SystemExit("the kernel died")  # after the upload, before the batch exists

    for file_survived in (True, False):
        prompts = [f"Summarize: order {i} {file_survived}" for i in range(5)]
        batch = Batch(len(prompts), lambda idx, prompts=prompts: [prompts[i] for i in idx])
        with pytest.MonkeyPatch.context() as mp, pytest.raises(SystemExit):
            mp.setattr(BatchClient, "create", dies)
            mp.setattr(JobStore, "abandon_part", lambda *a, **k: None)  # a dead kernel cleans nothing up
            mp.setattr(BatchClient, "delete", lambda *a, **k: None)
            submit(batch, RequestSpec(), connection=conn, poll_interval=POLL)
        store = JobStore()
        store.db.execute("UPDATE parts SET updated = updated - 3600")  # long quiet: its kernel is gone
        dead = store.jobs()[0]["id"]
        file_id = store.parts(dead)[0]["input_file_id"]
        store.close()
        if not file_survived:
            del emu._app.batches.files[file_id]  # expired, or deleted on the service
        job = submit(batch, RequestSpec(), connection=conn, poll_interval=POLL)
        res = job.result()
        assert not res.errors
        if file_survived:  # its upload is used: the batch is created now, nothing submitted twice
            assert job.ids == [dead] and res.report.requests == 0
        else:  # its file is gone: given up, the rows submitted again
            assert dead not in job.ids and res.report.requests == 5
            assert next(r for r in job_rows() if r["id"] == dead)["status"] == "failed"


def test_a_batch_the_service_forgot_is_na_with_the_reason_and_resubmitted(conn, emu):
    emu.configure(batch_seconds=0.5)
    s = pd.Series(["p", "q"])
    job = s.foundry.prompt("Echo {}", batch=True, wait=False, connection=conn, poll_interval=POLL)
    emu._app.batches.batches.clear()  # as if the emulator had restarted
    with pytest.raises(BatchFailedError, match="submitted anew"):
        job.result()
    assert len(fm.last_run().failures) == 2 and "no longer knows" in fm.last_run().failures[0][1]
    emu.configure(batch_seconds=0.1)
    assert s.foundry.prompt("Echo {}", batch=True, connection=conn, poll_interval=POLL, progress=False).notna().all()


# ---------------------------------------------------------------------- polling, over a mock transport


def _mock_service(statuses, *, fail_first_polls=0, status_code=503):
    """A Files/Batch API that answers each poll with the next status (as the service spells it)."""
    state = {"polls": 0, "lines": []}

    def handler(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path.endswith("/files") and request.method == "POST":
            body = request.read()
            state["lines"] = [json.loads(x.strip()) for x in body.split(b"\n") if x.startswith(b'{"custom_id"')]
            return httpx.Response(200, json={"id": "file-1", "status": "processed"})
        if path.endswith("/batches") and request.method == "POST":
            return httpx.Response(200, json={"id": "batch_1", "status": "Validating"})
        if path.endswith("/batches/batch_1"):
            state["polls"] += 1
            if state["polls"] <= fail_first_polls:
                return httpx.Response(status_code, json={"error": {"message": "busy"}}, headers={"retry-after-ms": "1"})
            st = statuses[min(len(statuses) - 1, state["polls"] - 1 - fail_first_polls)]
            done = st.lower() == "completed"
            return httpx.Response(200, json={"id": "batch_1", "status": st, "output_file_id": "file-out" if done else None,
                                             "request_counts": {"total": len(state["lines"]),
                                                                "completed": len(state["lines"]) if done else 0,
                                                                "failed": 0}})
        if path.endswith("/files/file-out/content"):
            out = []
            for line in reversed(state["lines"]):  # in any order: matched by custom_id
                text = "answer to " + line["body"]["messages"][-1]["content"]
                out.append(json.dumps({"id": "r", "custom_id": line["custom_id"], "response": {
                    "status_code": 200, "body": {"choices": [{"index": 0, "finish_reason": "stop", "message": {
                        "role": "assistant", "content": text}}], "usage": {"prompt_tokens": 3, "completion_tokens": 2},
                        "model": "gpt-4o-mini"}}, "error": None}))
            return httpx.Response(200, content="\n".join(out).encode())
        if request.method == "DELETE":
            return httpx.Response(200, json={"deleted": True})
        return httpx.Response(404, json={"error": {"message": f"no route {path}"}})

    return state, httpx.MockTransport(handler)


def _azure() -> Connection:
    return Connection.from_url("https://res.openai.azure.com/openai/v1", auth="none", model="gpt-4o-mini")


def test_status_is_compared_case_insensitively_and_results_matched_by_custom_id():
    state, transport = _mock_service(["Validating", "In_Progress", "Finalizing", "Completed"])
    prompts = ["one", "two", "three"]
    job = submit(Batch(3, lambda idx: [prompts[i] for i in idx]), RequestSpec(), connection=_azure(),
                 poll_interval=0.01, transport=transport)
    assert job.status == "validating"
    res = job.result()
    assert res.texts == ["answer to one", "answer to two", "answer to three"] and not res.errors
    assert job.status == "completed" and state["polls"] == 4
    assert all(line["url"] == "/chat/completions" and line["body"]["model"] == "gpt-4o-mini"
               for line in state["lines"])


def test_5xx_while_polling_is_retried_a_bounded_number_of_times(capsys):
    state, transport = _mock_service(["in_progress", "completed"], fail_first_polls=3)
    prompts = ["one"]
    job = submit(Batch(1, lambda idx: [prompts[i] for i in idx]), RequestSpec(), connection=_azure(),
                 poll_interval=0.01, transport=transport)
    assert job.result().texts == ["answer to one"]  # 3 x 503, then fine
    state, transport = _mock_service(["in_progress"], fail_first_polls=10 ** 6)
    prompts = ["two"]  # "one" is cached now
    job = submit(Batch(1, lambda idx: [prompts[i] for i in idx]), RequestSpec(), connection=_azure(),
                 poll_interval=0.01, transport=transport, max_retries=2)
    with pytest.raises(ServerError) as info:
        job.wait()
    assert state["polls"] == 3  # 1 + max_retries, then the error (the job keeps running)
    assert "keeps running" in info.value.hint and "fm.BatchJob.attach(" in info.value.hint
    assert "transient" in info.value.hint and capsys.readouterr().out == ""  # the error's fix says it, once


# ---------------------------------------------------------------------- secrets


def test_the_key_is_in_no_file_temp_file_log_repr_or_row(fm_home, tmp_path, monkeypatch, sentinel_key):
    import logging
    import tempfile

    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    log_file = tmp_path / "debug.log"
    handler = logging.FileHandler(log_file)
    handler.setLevel(logging.DEBUG)
    loggers = [logging.getLogger(n) for n in ("foundry_magics", "httpx", "httpcore")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.addHandler(handler)
        lg.setLevel(logging.DEBUG)
    try:
        texts = _batch_run_with_key(sentinel_key)
    finally:
        for lg, level in zip(loggers, levels):
            lg.removeHandler(handler)
            lg.setLevel(level)
        handler.close()
    assert log_file.read_text(), "DEBUG logging was on"
    assert list(scratch.iterdir()) == [], "the JSONL input files are deleted"
    needles = [sentinel_key, base64.b64encode(sentinel_key.encode()).decode(), sentinel_key[8:-8]]
    for path in [*fm_home.rglob("*"), *scratch.rglob("*"), log_file]:
        if path.is_file():
            data = path.read_bytes()
            for n in needles:
                assert n.encode() not in data, f"{n!r} in {path}"
    for text in texts:
        for n in needles:
            assert n not in text
    assert (fm_home / "batches.sqlite").exists()


def _batch_run_with_key(sentinel_key: str) -> list[str]:
    with Emulator(api_key=sentinel_key, lifetime=120, **FAST) as emu:
        conn = Connection.from_url(emu.url + "/openai/v1", kind="emulator", auth="key",
                                   api_key_env="FOUNDRY_TEST_KEY", model="gpt-4o-mini")
        df = reviews(30)
        job = df.foundry.prompt("Summarize: {text}", batch=True, wait=False, connection=conn, poll_interval=POLL)
        out = job.result()
        assert out.notna().all()
        vec = df["text"].foundry.embed(batch=True, connection=conn, poll_interval=POLL, progress=False)
        assert vec.notna().all()
        wrong = Connection.from_url(emu.url + "/openai/v1", kind="emulator", auth="key", api_key="not-the-key",
                                    model="gpt-4o-mini")
        with pytest.raises(fm.AuthError) as denied:
            df.foundry.prompt("Summarize: {text}", batch=True, connection=wrong, poll_interval=POLL, cache=False)
        texts = [repr(job), job._repr_markdown_(), str(job.as_row()), repr(fm.last_run()), str(denied.value),
                 repr(denied.value), json.dumps(job_rows(), default=str)]
        from foundry_magics.frames.accessor import batch_jobs

        texts.append(batch_jobs().to_string())
    return texts
