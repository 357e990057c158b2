"""The connection registry: `$FOUNDRY_MAGICS_HOME/connections.toml`. Never holds a secret.

    default = "name"
    [connections.NAME]
    endpoint = "https://..."
    kind = "openai-v1"
    ...

Writes are atomic (temp file + rename). A corrupt file raises an error naming the line and
is never overwritten.
"""

from __future__ import annotations

import os
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .connections import Connection
from .errors import ConfigurationError
from .paths import home

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = ["Registry", "registry_path"]

FILENAME = "connections.toml"


def registry_path() -> Path:
    return home() / FILENAME


@dataclass
class Registry:
    path: Path
    default: str | None = None
    connections: dict[str, Connection] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path | None = None) -> "Registry":
        path = Path(path) if path is not None else registry_path()
        if not path.exists():
            return cls(path)
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigurationError(
                f"{path} is not valid TOML: {exc}.",
                hint="Fix that line (the file was left as it is), or move the file away to start afresh.",
            ) from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigurationError(f"Cannot read {path}: {exc}.") from None
        default = data.get("default")
        if default is not None and not isinstance(default, str):
            raise ConfigurationError(f"{path}: `default` must be a connection name (a string).")
        tables = data.get("connections", {})
        if not isinstance(tables, dict):
            raise ConfigurationError(f"{path}: `connections` must be a table of [connections.NAME] tables.")
        conns: dict[str, Connection] = {}
        for name, table in tables.items():
            if not isinstance(table, dict):
                raise ConfigurationError(f"{path}: [connections.{name}] must be a table.")
            try:
                conns[name] = Connection.from_dict(table, name=name, source="registry")
            except ConfigurationError as exc:
                raise ConfigurationError(f"{path}, connection {name!r}: {exc.message}", hint=exc.hint) from None
        return cls(path, default, conns)

    def to_toml(self) -> str:
        import tomli_w

        doc: dict[str, Any] = {}
        if self.default:
            doc["default"] = self.default
        doc["connections"] = {name: c.to_dict() for name, c in sorted(self.connections.items())}
        return tomli_w.dumps(doc)

    def save(self) -> None:
        """Atomic write: a crash leaves either the old file or the new one, never half of one."""
        text = self.to_toml()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".connections-", suffix=".toml", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise

    def put(self, name: str, conn: Connection, *, make_default: bool = False) -> Connection:
        if not name or not isinstance(name, str) or any(c in name for c in ' ."[]=\n'):
            raise ConfigurationError(
                f"Invalid connection name {name!r}.", hint="Use letters, digits, '-' and '_' (e.g. 'prod-gpt4o')."
            )
        saved = conn.replace(name=name, source="registry")
        self.connections[name] = saved
        if make_default or not self.default:
            self.default = name
        return saved
