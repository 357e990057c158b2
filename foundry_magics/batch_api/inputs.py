"""What a batch call asks for, as keyed requests, and the input files they are written to.

A `Source` builds, chunk by chunk, the distinct requests of a call exactly as the online
path does - the prompt run's `RequestKeys` (the request builders, the route's identity,
`store.cache.request_key`), the embeddings run's `embed_keys` with `build_embed` +
`embed_body` (one text per line) - so each line's `custom_id` is the key the online path
caches that request under. So rows already answered online are not submitted, and finished
batch results answer later online calls.

`PartWriter` streams lines to a temporary file and starts a new one before a file would
pass `max_lines` lines or `max_bytes` bytes; a full file is handed to `on_full` (upload,
create the batch) and deleted from disk once that returns. Memory stays bounded: a chunk
of requests, and the keys of the file being written.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from foundry_magics.engine.prompts import Batch, RequestSpec
from foundry_magics.engine.run import Weights
from foundry_magics.rest.batches import input_line, line_body

__all__ = ["Source", "prompt_source", "embed_source", "Part", "PartWriter", "LinePacker", "line_key"]


@dataclass
class Source:
    """`size` distinct requests of one operation; `build(indices)` -> [(key, line body)]."""

    op: str  # chat | responses | embeddings
    size: int
    build: Callable[[Sequence[int]], list[tuple[bytes, Any]]]
    weights: Weights | None = None
    rows: int | None = None
    na_rows: int = 0
    model: str | None = None  # known after the first build
    packing: Any = None  # pack=N: an engine.packing.Packing (rows packed into lines by LinePacker)
    spec: Any = None  # the RequestSpec (packed lines are built from it)
    client: Any = None

    def weight(self, i: int) -> int:
        return int(self.weights[i]) if self.weights is not None else 1

    @property
    def total_rows(self) -> int:
        if self.rows is not None:
            return int(self.rows)
        return (int(sum(self.weights)) if self.weights is not None else self.size) + self.na_rows


def prompt_source(client: Any, batch: Batch, spec: RequestSpec) -> Source:
    """Chat / Responses requests, built and keyed by `RequestKeys`, as `PromptRun` builds and keys them."""
    from foundry_magics.engine.prompts import RequestKeys

    keys = RequestKeys(client, spec, client.connection)
    src = Source(spec.op, batch.size, build=lambda idx: [], weights=batch.weights, rows=batch.rows,
                 na_rows=batch.na_rows, model=spec.model, spec=spec, client=client)

    def build(idx: Sequence[int]) -> list[tuple[bytes, Any]]:
        out = []
        for prompt in batch.render(idx):
            key, body = keys.keyed(prompt)
            out.append((key, line_body(body, keys.model)))
        src.model = keys.model or src.model
        return out

    src.build = build
    return src


def embed_source(client: Any, texts: Sequence[str], *, model: str | None, dimensions: int | None,
                 weights: Weights | None = None, rows: int | None = None, na_rows: int = 0) -> Source:
    """Embeddings, one text per line, keyed by `embed_keys` as `EmbedRun` keys them (a vector cached per text)."""
    from foundry_magics.engine.embeddings import embed_keys
    from foundry_magics.rest.base import embed_body

    route, model = client.build_embed(texts[:1], model, dimensions)

    def build(idx: Sequence[int]) -> list[tuple[bytes, Any]]:
        chunk = [texts[i] for i in idx]
        _, keys = embed_keys(client, client.connection, chunk, model, dimensions)
        return [(key, line_body(embed_body(route, model, [text], dimensions), model))
                for key, text in zip(keys, chunk)]

    return Source("embeddings", len(texts), build, weights=weights, rows=rows, na_rows=na_rows, model=model)


class LinePacker:
    """pack=N with batch=True: the rows to submit grouped as `engine.packing.PackedRun` groups
    them, each pack written as one line (the same packed request as online). A line's
    custom_id is `line_key(rows)`; the part records which rows it carries. A pack of one is
    the row's own line, keyed by the row."""

    def __init__(self, client: Any, spec: RequestSpec, packing: Any, writer: "PartWriter", model: Any) -> None:
        from foundry_magics.engine.packing import pack_prompt

        self.client, self.spec, self.packing, self.writer, self.model = client, spec, packing, writer, model
        self.buffer: list[Any] = []
        self.task_tokens = len(pack_prompt(packing.task, [])) // 4 + len(spec.system or "") // 4 + 8
        self.options = dict(spec.options(), schema=packing.schema())
        self.lines = self.rows = 0

    def add(self, i: int, key: bytes, body: Any) -> None:
        from foundry_magics.engine.packing import Entry

        cap = next((body[k] for k in ("max_completion_tokens", "max_tokens", "max_output_tokens")
                    if isinstance(body.get(k), int)), None)
        self.buffer.append(Entry(i, key, None, body, cap, 0))
        if len(self.buffer) >= self.packing.max_rows * 4:
            self.flush(final=False)

    def flush(self, final: bool) -> None:
        from foundry_magics.engine.packing import group, item_id, pack_prompt, packed_cap

        todo = [e for e in self.buffer if e.item is None]
        if todo:
            for e, item in zip(todo, self.packing.items([e.i for e in todo])):
                e.item = item
        packs, self.buffer = group(self.buffer, self.packing, self.task_tokens, final=final)
        for pack in packs:
            self.rows += len(pack)
            self.lines += 1
            if len(pack) == 1:
                self.writer.add(pack[0].key, pack[0].body)
                continue
            taken: set[str] = set()
            text = pack_prompt(self.packing.task, [{"id": item_id(e.key, taken), **(e.item or {})} for e in pack])
            _, body = self.client.build(self.spec.op, text, **dict(self.options, max_tokens=packed_cap(pack)))
            rows = [e.key for e in pack]
            key = line_key(rows)
            self.writer.add_line(key, input_line(key.hex(), self.writer.url, line_body(body, self.model())), rows)


def line_key(rows: Sequence[bytes]) -> bytes:
    """A packed line's custom_id (32 bytes, like a request key): from its rows' keys, in order."""
    import hashlib

    return hashlib.sha256(b"fm-pack\0" + b"".join(rows)).digest()


@dataclass
class Part:
    """One input file: its lines on disk, and the keys they carry."""

    no: int
    path: str
    lines: int = 0
    size: int = 0
    keys: list[bytes] = field(default_factory=list)  # the rows' keys (a packed line carries several)
    packs: list[tuple[bytes, list[bytes]]] = field(default_factory=list)  # packed line key -> its rows' keys


class PartWriter:
    """Streams lines into input files of at most `max_lines` lines and `max_bytes` bytes."""

    def __init__(self, url: str, *, max_lines: int, max_bytes: int, on_full: Callable[[Part], None]) -> None:
        self.url = url
        self.max_lines = max(1, int(max_lines))
        self.max_bytes = max(1, int(max_bytes))
        self.on_full = on_full
        self.parts = 0  # files handed over
        self.lines = 0  # lines handed over, in all files
        self._part: Part | None = None
        self._file: Any = None

    def add(self, key: bytes, body: Any) -> None:
        self.add_line(key, input_line(key.hex(), self.url, body))

    def add_line(self, key: bytes, line: bytes, rows: Sequence[bytes] | None = None) -> None:
        """A line already built by `rest.batches.input_line` (its custom_id is `key.hex()`):
        Spark's executors build lines in one stage and write files in the next. `rows`: a
        packed line's rows' keys (the part carries those rows, the line is keyed by `key`)."""
        part = self._part
        if part is not None and (part.lines >= self.max_lines or part.size + len(line) > self.max_bytes):
            self._hand_over()
            part = None
        if part is None:
            part = self._open()
        if len(line) > self.max_bytes:
            from foundry_magics.errors import ConfigurationError

            raise ConfigurationError(f"One request is {len(line):,} bytes, more than an input file may hold "
                                     f"({self.max_bytes:,} bytes).", hint="Shorten that row's text, or send it online.")
        self._file.write(line)
        part.lines += 1
        part.size += len(line)
        if rows is None:
            part.keys.append(key)
        else:
            part.keys.extend(rows)
            part.packs.append((key, list(rows)))

    def close(self) -> None:
        """Hand over the last file, if it has lines."""
        if self._part is not None and self._part.lines:
            self._hand_over()
        self.discard()

    def discard(self) -> None:
        """Drop the file being written (interrupted, or an error): nothing is left on disk."""
        part, f = self._part, self._file
        self._part = self._file = None
        if f is not None:
            try:
                f.close()
            except OSError:
                pass
        if part is not None:
            _unlink(part.path)

    def _open(self) -> Part:
        fd, path = tempfile.mkstemp(prefix="fm-batch-", suffix=".jsonl")
        self._file = os.fdopen(fd, "wb", buffering=1 << 20)
        self._part = Part(self.parts, path)
        return self._part

    def _hand_over(self) -> None:
        part, f = self._part, self._file
        self._part = self._file = None
        assert part is not None and f is not None
        try:
            f.close()
            self.parts += 1
            self.lines += part.lines
            self.on_full(part)
        finally:
            _unlink(part.path)


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
