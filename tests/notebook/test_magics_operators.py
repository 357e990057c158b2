"""`%%foundry --df DF --filter | --topk K | --agg [--by COL] -o VAR`: rows of the options table,
"did you mean", the result in VAR, on the emulator."""

from __future__ import annotations

import pandas as pd
import pytest
from IPython.core.error import UsageError

from foundry_magics.notebook.magic_args import options_help, parse_cell

from magics_helpers import connect, emu, ip, run  # noqa: F401 - emu and ip are fixtures

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def conn(ip, emu):
    connect(ip, emu.url)
    ip.user_ns["df"] = pd.DataFrame({"text": ["I want a refund", "Lovely", "refund please, 3 points", "9 points"],
                                     "product": ["a", "b", "a", "b"]})
    return emu


def test_parse_and_help():
    args = parse_cell("--df df --topk 3 -o best", "Best: {text}")
    assert args.topk == 3 and args.out == "best" and args.df == "df"
    assert parse_cell("--df df --agg --by product", "Why? {text}").by == "product"
    for flag in ("--filter", "--topk K", "--agg", "--by COL"):
        assert flag in options_help()
    with pytest.raises(UsageError, match="Did you mean --filter"):
        parse_cell("--df df --filtr -o x", "p: {text}")
    with pytest.raises(UsageError, match="one operator per cell"):
        parse_cell("--df df --filter --agg", "p: {text}")
    with pytest.raises(UsageError, match="--by COL groups the rows of --agg"):
        parse_cell("--df df --filter --by product", "p: {text}")
    with pytest.raises(UsageError, match="only applies in DataFrame mode"):
        parse_cell("--filter", "p: {text}")
    with pytest.raises(UsageError, match="Python variable"):
        parse_cell("--df df --filter -o 'not a name'", "p: {text}")


def test_filter_cell_stores_the_rows_judged_true(ip, conn):
    ran = run(ip, "%%foundry --df df --filter -o kept\nAsks for a 'refund': {text}")
    assert ran.result.error_in_exec is None, ran.everything
    assert ip.user_ns["kept"].index.tolist() == [0, 2]


def test_topk_and_agg_cells(ip, conn):
    ran = run(ip, "%%foundry --df df --topk 2 -o best\nBest: {text}")
    assert ran.result.error_in_exec is None, ran.everything
    assert ip.user_ns["best"]["rank"].tolist() == [1, 2]
    ran = run(ip, "%%foundry --df df --agg --by product -o why\nWhat is wrong? {text}")
    assert ran.result.error_in_exec is None, ran.everything
    assert ip.user_ns["why"].index.tolist() == ["a", "b"]
    ran = run(ip, "%%foundry --df df --agg\nWhat is wrong? {text}")
    assert ran.value.text.startswith("[emulated] 4 rows")
