"""Counts and articles in what we print ("1 request", "an int"), and an Estimate that reads well
in a terminal (issue 18, item 9)."""

from __future__ import annotations

import pytest

from foundry_magics import errors
from foundry_magics.connections.connection import Connection
from foundry_magics.engine.estimate import Estimate
from foundry_magics.engine.report import RunReport
from foundry_magics.wording import article, counted, plural


@pytest.mark.parametrize("n, word, said", [
    (0, "request", "0 requests"), (1, "request", "1 request"), (2_048, "request", "2,048 requests"),
    (1, "retry", "1 retry"), (3, "retry", "3 retries"), (1, "duplicate row", "1 duplicate row"),
])
def test_counted(n, word, said):
    assert counted(n, word) == said


def test_plural_and_article():
    assert plural(1, "it", "them") == "it" and plural(2, "it", "them") == "them" and plural(2, "was") == "were"
    assert [article(w) for w in ("int", "str", "emulator", "openai-v1", "azure-deployment", "URL", "hour", "user")] \
        == ["an int", "a str", "an emulator", "an openai-v1", "an azure-deployment", "a URL", "an hour", "a user"]


def test_a_run_report_counts_one_request_and_one_retry_in_the_singular():
    line = RunReport(rows=1, done=1, requests=1, retries=1, seconds=1.0).summary()
    assert "1 request ·" in line and "1 retry" in line and "1 requests" not in line and "1 retries" not in line
    assert "2 requests" in RunReport(rows=2, done=2, requests=2, seconds=1.0).summary()


def test_an_estimate_counts_in_the_singular_and_reads_well_in_a_terminal():
    est = Estimate(rows=2, distinct=1, to_send=1, input_tokens=12, output_cap=50, max_output_tokens=50,
                   model="gpt-4o-mini", connection="emulator")
    assert est.summary().startswith("Estimate (nothing sent): 1 request to send · 2 rows · 1 distinct")
    lines = repr(est).splitlines()  # what a terminal, the IPython console or a list shows
    assert lines[0] == "Estimate (nothing was sent) for chat on gpt-4o-mini"
    shown = dict(line.strip().split(": ", 1) for line in lines[1:])
    assert shown["rows"] == "2" and shown["distinct requests"] == "1 (1 duplicate row sent once)"
    assert shown["already cached"] == "0" and shown["to send"] == "1 request"
    assert shown["input tokens (est.)"].startswith("12 ") and shown["output cap"].startswith("50 per request")
    assert shown["cost"].startswith("unknown: no price for gpt-4o-mini")
    assert "Estimate(rows=" not in repr(est) and str(est) == repr(est) and len(lines) < 15
    assert "<table>" in est._repr_html_() and est._repr_markdown_().startswith("| estimate")  # notebooks: unchanged


def test_an_estimate_in_ipython_shows_its_text(fm_home):
    from IPython.lib.pretty import pretty

    est = Estimate(rows=3, distinct=3, to_send=3, model="m")
    assert pretty(est).startswith("Estimate (nothing was sent) for chat on m\n  rows: 3")


def test_kinds_are_named_with_their_article():
    from foundry_magics.rest.agents import _v1_root

    conn = Connection.from_url("https://r.openai.azure.com/openai/deployments/gpt-4o/chat/completions"
                               "?api-version=2024-10-21", auth="none")
    assert conn.kind == "azure-deployment"
    with pytest.raises(errors.ConfigurationError) as info:
        _v1_root(conn)
    assert "is an azure-deployment endpoint" in info.value.message
