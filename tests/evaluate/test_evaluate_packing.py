"""`evaluate(..., pack=N)`: every (prompt, model) run packs its rows (the engine runs them
together as packed runs), with the scores of the unpacked evaluation and far fewer requests."""

from __future__ import annotations

import math

import pandas as pd
import pytest

import foundry_magics as fm
from foundry_magics.connections import Connection
from foundry_magics.emulator import Emulator

pytestmark = pytest.mark.timeout(120)

LABELS = ["positive", "negative", "neutral"]
SCORED = ["prompt", "model", "rows", "accuracy", "macro_f1", "failures"]


def _reviews(n: int) -> pd.DataFrame:
    pos = ["I love it, great and fast", "Excellent, works perfectly", "Wonderful friendly staff"]
    neg = ["Terrible, broken on arrival", "Awful and slow, a waste", "Worst purchase, useless"]
    neu = ["It arrived on Tuesday", "The box is blue", "I bought it in March"]
    return pd.DataFrame({"text": [(pos, neg, neu)[i % 3][(i // 3) % 3] + f" (order {i})" for i in range(n)],
                         "label": [LABELS[i % 3] for i in range(n)]})


def test_a_packed_evaluation_scores_as_unpacked_with_fewer_requests():
    df = _reviews(45)
    with Emulator(lifetime=110) as emu:
        conn = Connection.from_url(emu.url + "/openai/v1", kind="emulator", auth="none", model="gpt-4o")
        call = {"labels": LABELS, "models": ["gpt-4o", "gpt-4.1-nano"], "connection": conn, "progress": False,
                "cache": False, "prompts": {"short": "Sentiment of: {text}", "long": "The sentiment of: {text}"}}
        alone = df.foundry.evaluate("label", **call)
        assert emu.stats()["requests"] == 4 * 45
        emu.reset_stats()
        packed = df.foundry.evaluate("label", pack=10, **call)
        rep = fm.last_run()
        assert emu.stats()["requests"] == rep.requests == 4 * math.ceil(45 / 10)
        assert rep.pack == 10 and rep.rows_per_request > 8 and rep.done == 4 * 45
        pd.testing.assert_frame_equal(packed.table[SCORED], alone.table[SCORED])
        # corrupted packs change nothing either: the rows they did not answer are sent again
        emu.configure(pack_fault_rate=0.3, pack_faults=None, seed=5)
        faulty = df.foundry.evaluate("label", pack=10, **call)
        assert fm.last_run().pack_retried > 0
    pd.testing.assert_frame_equal(faulty.table[SCORED], alone.table[SCORED])
