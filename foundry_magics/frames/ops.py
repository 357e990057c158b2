"""Old home of the pandas operations, kept so imports users may have typed keep working.

The operations now live in the core (`foundry_magics.ops`: options, templates, plans,
operations) and the pandas front-end in `foundry_magics.frames.pandas`.
"""

from __future__ import annotations

from foundry_magics.frames.pandas import (
    classify,
    embed,
    estimate,
    extract,
    prompt,
    run_frame,
    sentiment,
    summarize,
    translate,
)
from foundry_magics.ops.operations import EXTRACT, SENTIMENT_LABELS, SUMMARIZE, TRANSLATE
from foundry_magics.ops.template import Template, parse_template

__all__ = ["Template", "parse_template", "prompt", "classify", "extract", "embed", "summarize", "translate",
           "sentiment", "estimate", "run_frame", "SUMMARIZE", "TRANSLATE", "EXTRACT", "SENTIMENT_LABELS"]
