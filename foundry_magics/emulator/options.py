"""The emulator's options: one table, with defaults, kinds and CLI help.

Everything else is derived from it: ``App`` defaults and coercions, ``Emulator.configure``'s
runtime names and the ``Emulator(...)`` keywords (checked by a test), and the CLI flags of
``python -m foundry_magics.emulator``. Stdlib only, no imports: cheap to load anywhere.
"""

from __future__ import annotations

from typing import Any, NamedTuple


class Option(NamedTuple):
    name: str
    default: Any
    kind: str            # "float", "float?" (None allowed), "int", "bool", "str?", "tokens", "deployments"
    help: str | None = None
    runtime: bool = True  # an Emulator(...) keyword, settable later with configure() / the CLI
    flag: str | None = None  # CLI flag when it is not --name-with-dashes


OPTIONS: tuple[Option, ...] = (
    Option("latency", 0.0, "float", "seconds before response headers"),
    Option("token_delay", 0.0, "float", "seconds between streamed tokens"),
    Option("rpm", None, "float?", "requests per minute (enforced per window)"),
    Option("rpm_window", 10.0, "float", "rate-limit window in seconds (default 10)"),
    Option("tpm", None, "float?", "tokens per minute (prompt chars/4 + max_tokens)"),
    Option("fail_rate", 0.0, "float"),
    Option("fail_status", 500, "int"),
    Option("cut_rate", 0.0, "float", "close connections without a response"),
    Option("stream_cut_rate", 0.0, "float"),
    Option("malformed_rate", 0.0, "float"),
    Option("wrong_content_type_rate", 0.0, "float"),
    Option("slow_body", 0.0, "float", "trickle bodies over this many seconds"),
    Option("fail_first", 0, "int", "first N attempts of each distinct body fail"),
    Option("quota_block_seconds", None, "float?"),
    Option("api_key", None, "str?", "required key (visible in ps; prefer --api-key-env)"),
    Option("bearer_tokens", (), "tokens", "accepted Bearer token (repeat)", flag="--bearer-token"),
    Option("expired_tokens", (), "tokens", "expired Bearer token (repeat)", flag="--expired-token"),
    Option("deployments", None, "deployments", "comma-separated deployment names"),
    Option("strict_models", False, "bool", "unknown model/deployment -> 404"),
    Option("seed", 0, "int"),
    # packed requests (emulator/packing.py): corrupt this fraction of their answers
    Option("pack_fault_rate", 0.0, "float", "fraction of a packed reply's answers corrupted (emulator/packing.py)"),
    Option("pack_faults", None, "str?", "comma-separated: drop,duplicate,shuffle,rename,garble (default: all)"),
    # the Files and Batch APIs (emulator/batches.py)
    Option("batch_seconds", 2.0, "float", "the batch fast clock: seconds from validating to completed (Azure: up "
           "to 24 h)"),
    Option("batch_fail_rate", 0.0, "float", "fraction of batch lines answered with an error (the error file)"),
    Option("batch_expire", 0, "int", "the next N batches expire with about half of their lines done"),
    Option("file_pending_seconds", 0.0, "float", "uploaded files stay 'pending' this long (creating a batch on "
           "one fails meanwhile)"),
    Option("batch_refuse_embeddings", False, "bool", "fail /embeddings batches at validation (as Azure's FAQ says)"),
    # internal: the thread-mode Emulator turns it on for `Emulator.requests`
    Option("record_requests", False, "bool", runtime=False),
    # API Management's token-limit policy (emulator/agents.py), per subscription key. Not (yet)
    # Emulator(...) keywords: set them with App(...), `--config-stdin` or POST /_emulator/config.
    Option("gateway_tpm", None, "float?", "gateway: tokens per minute per key (over it: 429)", runtime=False),
    Option("gateway_token_quota", None, "float?", "gateway: tokens per period per key (over it: 403)",
           runtime=False),
    Option("gateway_quota_period", 3600.0, "float", "gateway: the quota's period in seconds", runtime=False),
    Option("gateway_quota_retry_after", True, "bool", "gateway: the 403 names a Retry-After", runtime=False),
)

BY_NAME: dict[str, Option] = {o.name: o for o in OPTIONS}
DEFAULTS: dict[str, Any] = {o.name: o.default for o in OPTIONS}
RUNTIME: tuple[str, ...] = tuple(o.name for o in OPTIONS if o.runtime)

# Server / lifecycle settings (not application options): Emulator(...) keywords and CLI flags.
SERVER: dict[str, Any] = {"host": "127.0.0.1", "port": 0, "lifetime": None, "allow_remote": False}


def coerce(options: dict[str, Any]) -> dict[str, Any]:
    """Normalise given option values by kind (in place; returns `options`)."""
    for k, v in options.items():
        kind = BY_NAME[k].kind
        if kind == "float":
            options[k] = float(v or 0.0)
        elif kind == "int":
            options[k] = int(v or BY_NAME[k].default)
        elif kind == "tokens":
            options[k] = tuple([v] if isinstance(v, str) else (v or ()))
    return options
