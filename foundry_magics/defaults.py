"""Every default and shared constant of the package, once.

Stdlib only and no I/O at import time, so any layer (core or face) can import it cheaply.
A value that more than one module needs lives here; a module that needs it imports it.
"""

from __future__ import annotations

import os
from pathlib import Path

__version__ = "0.1.0"

# ---------------------------------------------------------------------- where user state lives

ENV_HOME = "FOUNDRY_MAGICS_HOME"


def home(create: bool = False) -> Path:
    """`$FOUNDRY_MAGICS_HOME`, default `~/.config/foundry-magics/` (registry, history, cache)."""
    value = os.environ.get(ENV_HOME)
    path = Path(value).expanduser() if value else Path.home() / ".config" / "foundry-magics"
    if create:
        path.mkdir(parents=True, exist_ok=True)
    return path


# ---------------------------------------------------------------------- one call

TIMEOUT = 60.0  # seconds per attempt (each read waits at most this long)
CONNECT_TIMEOUT = 10.0  # seconds to open a connection, within TIMEOUT
MAX_RETRIES = 6  # retries after the first attempt, for 408/409/429/5xx, cuts, timeouts, bad bodies
MIN_DEADLINE = 600.0  # a call's retries and waits stop at max(MIN_DEADLINE, 2 x timeout)
QUOTA_BLOCK_SECONDS = 300.0  # a retry-after this long or longer is a quota block: fail at once
RETRY_STATUSES = frozenset({408, 409, 429, 500, 502, 503, 504})
BACKOFF_BASE = 0.5  # seconds: exponential backoff with full jitter, base * 2**(retry - 1) ...
BACKOFF_CAP = 8.0  # ... capped here
RATE_LIMIT_BACKOFF_BASE = 1.0  # a 429 without retry-after waits longer than a 5xx
RATE_LIMIT_BACKOFF_CAP = 30.0
TOKEN_REFRESH_MARGIN = 300.0  # seconds before expires_on at which a cached Entra token is renewed
PROBE_TIMEOUT = 15.0  # the picker's Test and `probe()`
EMBED_BATCH = 2048  # inputs per embeddings request (the service's limit)
USER_AGENT = f"foundry-magics/{__version__}"

# ---------------------------------------------------------------------- what is never shown

REDACTED = "***redacted***"

# ---------------------------------------------------------------------- endpoints

COGNITIVE_SCOPE = "https://cognitiveservices.azure.com/.default"  # Azure OpenAI, /models, APIM
AI_SCOPE = "https://ai.azure.com/.default"  # Foundry projects
DEFAULT_SCOPE = COGNITIVE_SCOPE
DEFAULT_API_VERSIONS = {
    "azure-deployment": "2024-10-21",
    "foundry-models": "2025-04-01",
}
# The environment variable that holds the key, by endpoint kind (auth "key").
DEFAULT_KEY_ENV = {
    "openai-v1": "AZURE_OPENAI_API_KEY",
    "azure-deployment": "AZURE_OPENAI_API_KEY",
    "foundry-models": "AZURE_INFERENCE_CREDENTIAL",
    "foundry-project": "AZURE_AI_API_KEY",
    "openai-compatible": "OPENAI_API_KEY",
}
APIM_KEY_HEADER = "Ocp-Apim-Subscription-Key"
EMULATOR_NAME = "emulator"
EMULATOR_MODEL = "gpt-4o-mini"  # the model a connection to the emulator uses when none is given
DEFAULT_EMBEDDING_MODEL = "text-embedding-3-small"

# Connections discovered from the environment: (connection name, endpoint variable), in
# priority order (the first one set is the default), and every variable discovery reads.
ENV_SOURCES = (
    ("foundry", "FOUNDRY_ENDPOINT"),
    ("azure-openai", "AZURE_OPENAI_ENDPOINT"),
    ("azure-ai-project", "AZURE_AI_PROJECT_ENDPOINT"),
    ("azure-ai-project", "PROJECT_ENDPOINT"),
    ("azure-inference", "AZURE_INFERENCE_ENDPOINT"),
)
ENV_VARIABLES = (
    "FOUNDRY_ENDPOINT", "FOUNDRY_API_KEY", "FOUNDRY_MODEL",
    "AZURE_OPENAI_ENDPOINT", "AZURE_OPENAI_API_KEY", "OPENAI_API_VERSION",
    "AZURE_OPENAI_DEPLOYMENT", "AZURE_OPENAI_DEPLOYMENT_NAME",
    "AZURE_AI_PROJECT_ENDPOINT", "PROJECT_ENDPOINT", "AZURE_AI_MODEL_DEPLOYMENT_NAME", "MODEL_DEPLOYMENT_NAME",
    "AZURE_INFERENCE_ENDPOINT", "AZURE_INFERENCE_CREDENTIAL", "AZURE_INFERENCE_MODEL",
)
# Everything that can point this package (or the OpenAI SDK beside it) at a real service: the
# demo and the tests clear these so that a first-time reader's setup is what they see.
SERVICE_VARIABLES = (*ENV_VARIABLES, "OPENAI_API_KEY", "OPENAI_BASE_URL")

# ---------------------------------------------------------------------- DataFrame runs (the engine)

CONCURRENCY = 32  # requests in flight when not given
EMBED_CONCURRENCY = 2  # embeddings requests in flight (each carries up to EMBED_BATCH texts)
EMBED_TIMEOUT = 120.0  # an embeddings request of 2,048 texts takes longer than a chat turn
MAX_RATE_LIMITED = 100  # 429 waits per request: flow control, bounded only to never spin forever
FAIL_FAST = 10  # this many failed requests and no success: stop the run and raise the error
FEED_CHUNK = 256  # requests rendered, keyed and looked up in the cache at a time
FEED_AHEAD = 1024  # rendered requests kept queued ahead of the workers
FLUSH_EVERY = 0.5  # seconds between cache flushes
FLUSH_AT = 500  # buffered replies that force a flush
POLL = 0.1  # seconds: how often the caller's thread looks at a run (Ctrl-C latency)
PROGRESS_AFTER = 0.5  # seconds: a run quicker than this shows no progress at all
