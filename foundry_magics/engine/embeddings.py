"""A run of embeddings: distinct texts -> float32 vectors, cached per text, EMBED_BATCH per request.

The same shape as a prompt run (`Run`): the same counters, report, stop switch, and each
request sent through `Run.send` (limit, retry policy, 429 pause); only what a request is
differs - up to 2,048 texts at once.
"""

from __future__ import annotations

from typing import Any, Sequence

from foundry_magics.defaults import EMBED_BATCH
from foundry_magics.engine.run import Run

__all__ = ["EmbedRun", "embed_keys"]

_LOOKUP = 5000  # cache keys looked up at a time


def embed_keys(client: Any, conn: Any, texts: Sequence[str], model: str | None,
               dimensions: int | None) -> tuple[str | None, list[bytes]]:
    """(model, cache key per text): how an embeddings run keys its texts (and `engine.estimate` too)."""
    from foundry_magics.store.cache import request_key, route_identity

    route, model = client.build_embed(texts, model, dimensions)
    rid = route_identity(route.url, route.params, emulator=conn.is_emulator)
    return model, [request_key(rid, "embeddings", {"model": model, "input": t, "dimensions": dimensions})
                   for t in texts]


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
        self.model, keys = embed_keys(self.client, self.conn, self.texts, self.model, self.dimensions)
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
        bound = None
        if self.budget is not None:  # max_cost: a token per UTF-8 byte (the reply carries no usage: kept as spent)
            bound = self.budget.cost(sum(len(t.encode("utf-8", "surrogatepass")) for t in texts), 0)
        vecs = await self.send(lambda: self.client.embed(texts, model=self.model, dimensions=self.dimensions),
                               est, batch, bound)
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
