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

# ---------------------------------------------------------------------- exploring and cost

CHARS_PER_TOKEN = 4  # estimates without a tokenizer: one token per 4 characters (OpenAI's rule of thumb)
# Output caps sent when the caller gives no max_tokens (max_tokens=None sends none):
CLASSIFY_MAX_TOKENS = 32  # classify() and sentiment(): a label, as {"label": ...}
EXTRACT_MAX_TOKENS = 256  # extract(): a few fields
# summarize() / translate(): (ratio to the input's estimated tokens, floor, ceiling)
SUMMARIZE_CAP = (0.5, 64, 512)
TRANSLATE_CAP = (2.0, 64, 4096)
REASONING_CAP_FLOOR = 1024  # o-series / gpt-5 spend hidden reasoning tokens inside the cap
BATCH_PRICE_FACTOR = 0.5  # the Batch API costs half, unless prices.toml gives batch prices
# max_cost: what a request in flight is counted at until its reply says what it cost (engine.budget)
BUDGET_UNCAPPED_OUTPUT = 32_768  # output tokens of a request without max_tokens (gpt-4.1's output limit)
BUDGET_UNCAPPED_REASONING_OUTPUT = 128_000  # ... of a reasoning model's (o-series, gpt-5)
BUDGET_IMAGE_TOKENS = 1445  # an image of unknown size at detail high: 85 + 170 x 8 tiles, the rule's most
BUDGET_MESSAGE_TOKENS = 4  # per message, list or object of a body (the format's own tokens), counted high
PRICES_FILE = "prices.toml"  # in $FOUNDRY_MAGICS_HOME; prices per 1M input / output tokens
IMAGE_FORMATS = ("png", "jpeg", "gif", "webp")  # what the vision models accept
IMAGE_MAX_BYTES = 20 * 1024 * 1024  # per image (Azure OpenAI's limit)
IMAGE_DETAIL = "auto"  # chat completions' image_url.detail
IMAGE_BASE_TOKENS = 85  # an image costs 85 tokens plus 170 per 512 px tile (detail high/auto)
IMAGE_TILE_TOKENS = 170
IMAGE_UNKNOWN_TOKENS = 765  # an image whose size is not known here (a URL): 2 x 2 tiles
COMPARE_UPDATE_INTERVAL = 0.15  # seconds between live updates of a comparison's columns

# ---------------------------------------------------------------------- agents, conversations, gateways

AGENTS_API_VERSION = "v1"  # GET {project}/agents?api-version=v1
PROJECT_URL_EXAMPLE = "https://RES.services.ai.azure.com/api/projects/P"  # shown when a project is needed
CONVERSATION_ITEMS_PAGE = 100  # items per page when listing a server-side conversation (the API's maximum)
LIST_MAX_PAGES = 50  # pages of agents / conversation items followed at most (5,000 items)
CONVERSATIONS_FILE = "conversations.sqlite"  # in $FOUNDRY_MAGICS_HOME: local name -> server conversation id
PROJECT_ROLE = "Azure AI User"  # the role a Foundry project's Entra ID callers need
OPENAI_ROLE = "Cognitive Services OpenAI User"  # ... and an Azure OpenAI / Foundry resource's
GATEWAY_HOST_SUFFIXES = (".azure-api.net",)  # API Management gateways

# ---------------------------------------------------------------------- the Batch API

BATCH_POLL_INTERVAL = 60.0  # seconds between status polls of a batch job (Azure: no more often than every 60 s)
BATCH_EMULATOR_POLL_INTERVAL = 0.5  # ... and of the emulator's fast-clock jobs
BATCH_FILE_POLL = 2.0  # seconds between status checks of an uploaded input file (at most the poll interval)
BATCH_FILE_WAIT = 1800.0  # seconds an upload may stay "pending" before the submission gives up
BATCH_MAX_LINES = 100_000  # requests per input file (Azure's limit): files are split below it ...
BATCH_MAX_BYTES = 200 * 1024 * 1024  # ... and below 200 MB per file
BATCH_COMPLETION_WINDOW = "24h"  # the only completion window the service accepts
BATCH_CHUNK = 2_000  # distinct requests rendered, keyed and looked up at a time while writing input files
BATCH_SUBMIT_STALE = 300.0  # seconds: a submission this quiet was abandoned (its kernel died): resubmit its rows
BATCH_FILE = "batches.sqlite"  # in $FOUNDRY_MAGICS_HOME: the jobs table (ids, status, the keys of their requests)

# ---------------------------------------------------------------------- semantic operators (ops/judge, topk, agg)

JUDGE_MAX_TOKENS = 16  # mask/filter: {"answer": true}
SCORE_MAX_TOKENS = 16  # topk's scoring: {"score": 87}
COMPARE_MAX_TOKENS = 16  # topk's head: {"better": "A"}
AGG_MAX_TOKENS = 512  # agg: each partial and the final answer
TOPK_HEAD = 2  # topk reranks at least TOPK_HEAD * k candidates (all rows tied with them too)
AGG_WINDOW_SHARE = 0.75  # agg packs a request to this share of the context window (token counts are estimates)
AGG_ASSUMED_WINDOW = 32_768  # a model whose window is not known: assumed, then learnt from a context-length error
# Context windows (input + output tokens) of known models, matched by name (exact, else the
# longest known prefix: "gpt-4o-2024-08-06" is gpt-4o). A context-length error teaches another.
CONTEXT_WINDOWS = {
    "gpt-4.1": 1_047_576, "gpt-4.1-mini": 1_047_576, "gpt-4.1-nano": 1_047_576,
    "gpt-4o": 128_000, "gpt-4o-mini": 128_000, "gpt-4-turbo": 128_000, "gpt-4": 8_192, "gpt-4-32k": 32_768,
    "gpt-35-turbo": 16_385, "gpt-3.5-turbo": 16_385,
    "gpt-5": 400_000, "gpt-5-mini": 400_000, "gpt-5-nano": 400_000, "gpt-5-chat": 128_000,
    "o1": 200_000, "o1-mini": 128_000, "o3": 200_000, "o3-mini": 200_000, "o4-mini": 200_000,
    "phi-4": 16_384, "phi-4-mini-instruct": 128_000, "phi-3.5-mini-instruct": 128_000,
    "deepseek-r1": 128_000, "deepseek-v3": 128_000, "mistral-large": 128_000, "llama-3.3-70b-instruct": 128_000,
}
