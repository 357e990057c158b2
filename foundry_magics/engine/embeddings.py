"""A run of embeddings: distinct texts -> float32 vectors, cached per text, EMBED_BATCH per request.

The same shape as a prompt run (`Run`): the same counters, report, stop switch, and each
request sent through `Run.send` (limit, retry policy, 429 pause); only what a request is
differs - up to 2,048 texts at once.
"""

from __future__ import annotations

from typing import Any, Sequence

from foundry_magics.defaults import EMBED_BATCH
from foundry_magics.engine.run import Run

__all__ = ["EmbedRun"]

_LOOKUP = 5000  # cache keys looked up at a time


class EmbedRun(Run):
    operation = "embeddings"

    def __init__(self, texts: Sequence[str], conn: Any, *, dimensions: int | None = None, **options: Any) -> None:
        super().__init__(conn, size=len(texts), **options)
        self.texts = texts
        self.dimensions = dimensions

    @property
    def vectors(self) -> list[Any]:
        return self.values

    async def work(self) -> None:
        from foundry_magics.store.cache import request_key, route_identity

        route, self.model = self.client.build_embed(self.texts, self.model, self.dimensions)
        rid = route_identity(route.url, route.params, emulator=self.conn.is_emulator)
        keys = [request_key(rid, "embeddings", {"model": self.model, "input": t, "dimensions": self.dimensions})
                for t in self.texts]
        missing = self._from_cache(keys)
        batches = [missing[s:s + EMBED_BATCH] for s in range(0, len(missing), EMBED_BATCH)]
        await self.gather([self._one(batch, keys) for batch in batches])

    def _from_cache(self, keys: list[bytes]) -> list[int]:
        import numpy as np

        missing: list[int] = []
        for start in range(0, len(keys), _LOOKUP):
            part = keys[start:start + _LOOKUP]
            found = self.cache.get_vectors(part)
            for off, k in enumerate(part):
                blob = found.get(k)
                if blob is None:
                    missing.append(start + off)
                else:
                    self.cache_hits += 1
                    self.succeed([start + off], np.frombuffer(blob, dtype=np.float32), cached=True)
        return missing

    async def _one(self, batch: list[int], keys: list[bytes]) -> None:
        import numpy as np

        texts = [self.texts[i] for i in batch]
        est = sum(len(t) for t in texts) // 4 + 1
        vecs = await self.send(lambda: self.client.embed(texts, model=self.model, dimensions=self.dimensions),
                               est, batch)
        if vecs is None:
            return
        self.successes += 1
        for i, v in zip(batch, vecs):
            arr = np.asarray(v, dtype=np.float32)
            self.values[i] = arr
            self.done_rows += self.weight(i)
            self.cache.put_vector(keys[i], self.model, arr.tobytes())
        del vecs
        self.flush()
