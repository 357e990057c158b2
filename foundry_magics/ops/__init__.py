"""The operation core: every DataFrame operation, for every front-end and every mode.

    from foundry_magics.ops import Prompt, Classify, Rows, check_options

* `options`: the one table of options and the one function that checks them;
* `template`: `{col}` templates, parsed and checked against the columns once;
* `plan`: rows -> distinct requests over Arrow arrays (dedup, NA, images), results back onto rows;
* `replies`: what a reply means for an operation (a label, JSON fields);
* `operations`: the operations (prompt, classify, extract, embed, summarize, translate,
  sentiment), each run online (`engine/`), through the Batch API, or as an estimate;
* `judge`, `topk`, `agg` (with `rounds`): the semantic operators mask/filter, topk and agg.

Front-ends (`frames.pandas`, `frames.polars`, `frames.spark`, the `%%foundry --df` cell) only
convert their data to `Rows` and the `Outcome` back. Importing this package imports neither
pandas nor pyarrow.
"""

from __future__ import annotations

from foundry_magics.ops.agg import Agg
from foundry_magics.ops.judge import Judge
from foundry_magics.ops.operations import (
    Classify,
    Embed,
    Extract,
    Operation,
    Outcome,
    Prompt,
    Rows,
    Sentiment,
    Summarize,
    Translate,
)
from foundry_magics.ops.options import check as check_options
from foundry_magics.ops.plan import Plan
from foundry_magics.ops.template import Template, parse_template
from foundry_magics.ops.topk import TopK

__all__ = ["Operation", "Prompt", "Classify", "Extract", "Embed", "Summarize", "Translate", "Sentiment", "Rows",
           "Outcome", "Plan", "Template", "parse_template", "check_options", "Judge", "TopK", "Agg"]
