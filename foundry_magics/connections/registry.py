"""The connection registry: `$FOUNDRY_MAGICS_HOME/connections.toml`. Never holds a secret.

    default = "prod"

    [connections.prod]
    endpoint = "https://my-resource.openai.azure.com/openai/v1"
    kind = "openai-v1"
    auth = "key"
    api_key_env = "AZURE_OPENAI_API_KEY"
    model = "gpt-4.1-mini"

    [connections.pasted]
    ...
    key_prompt = true      # the key was pasted, not saved: supply it again (or set api_key_env)

Reading: a syntax error names the line and column; a bad table names its line and the
field. Writing is a locked read-modify-write: under a lock file the registry is read afresh,
the changes made through this object (`put`, `remove`, `rename`, `set_default`) are
replayed on it, and the result replaces the file atomically (temp file + fsync + rename).
So two notebooks saving different connections at once keep both, a crash leaves the old
file or the new one, and a file that does not parse is never overwritten.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from foundry_magics.connections.connection import Connection
from foundry_magics.defaults import home
from foundry_magics.errors import ConfigurationError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = [
    "Registry",
    "registry_path",
    "save_connection",
    "delete_connection",
    "rename_connection",
    "set_default",
    "KEY_PROMPT",
    "LOCK_TIMEOUT",
]

FILENAME = "connections.toml"
KEY_PROMPT = "key_prompt"
LOCK_TIMEOUT = 10.0  # seconds to wait for another process's write
_NAME_RE = re.compile(r"^[A-Za-z0-9_-]+$")
_LINE_RE = re.compile(r"\(at line (\d+), column (\d+)\)")

# Other spellings accepted when reading (written back in the canonical form).
ALIASES = {
    "url": "endpoint",
    "base_url": "endpoint",
    "key_env": "api_key_env",
    "api_key_var": "api_key_env",
    "header": "key_header",
    "deployment": "model",
}


def registry_path() -> Path:
    return home() / FILENAME


def check_name(name: Any) -> str:
    if not isinstance(name, str) or not _NAME_RE.match(name) or name == "emulator":
        reason = "is reserved for the built-in emulator" if name == "emulator" else "is not a valid name"
        raise ConfigurationError(
            f"Connection name {name!r} {reason}.",
            hint="Use letters, digits, '-' and '_' (e.g. 'prod-gpt4o').",
        )
    return name


@dataclass
class Registry:
    path: Path
    default: str | None = None
    connections: dict[str, Connection] = field(default_factory=dict)
    # Names whose key was pasted (held in memory) when saved: it must be supplied again.
    key_prompt: set[str] = field(default_factory=set)
    _ops: list[Callable[["Registry"], None]] = field(default_factory=list, repr=False, compare=False)

    # ------------------------------------------------------------------ reading

    @classmethod
    def load(cls, path: Path | None = None) -> "Registry":
        path = Path(path) if path is not None else registry_path()
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return cls(path)
        except OSError as exc:
            raise ConfigurationError(
                f"Cannot read {path}: {exc.strerror or exc}.",
                hint="Check the file's permissions, or set FOUNDRY_MAGICS_HOME elsewhere.",
            ) from None
        return cls.parse(raw, path)

    @classmethod
    def parse(cls, raw: bytes | str, path: Path) -> "Registry":
        fix = "Fix that line (the file was left as it is), or move the file away to start afresh."
        try:
            text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
        except UnicodeDecodeError as exc:
            line = raw[: exc.start].count(b"\n") + 1 if isinstance(raw, bytes) else 0
            raise ConfigurationError(f"{path}, line {line}: not valid UTF-8.", hint=fix) from None
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            msg = str(exc)
            m = _LINE_RE.search(msg)
            if m:
                n = int(m.group(1))
                where = f"line {n}, column {m.group(2)}"
            else:  # "(at end of document)"
                n = len(text.splitlines()) or 1
                where = f"line {n} (end of file)"
            cause = _LINE_RE.sub("", msg).replace("(at end of document)", "").strip().rstrip(".")
            snippet = _line(text, n)
            raise ConfigurationError(
                f"{path}, {where}: not valid TOML ({cause})" + (f": {snippet!r}" if snippet else "") + ".",
                hint=fix,
            ) from None

        default = data.get("default")
        if default is not None and not isinstance(default, str):
            raise ConfigurationError(f"{path}, line {_find(text, 'default')}: `default` must be a connection name "
                                     "(a string).", hint=fix)
        unknown_top = sorted(set(data) - {"default", "connections"})
        if unknown_top:
            raise ConfigurationError(
                f"{path}: unknown top-level key(s): {', '.join(unknown_top)}.",
                hint="The file holds `default = \"NAME\"` and [connections.NAME] tables only.",
            )
        tables = data.get("connections", {})
        if not isinstance(tables, dict):
            raise ConfigurationError(f"{path}: `connections` must be a table of [connections.NAME] tables.", hint=fix)
        reg = cls(path, default)
        for name, table in tables.items():
            line = _find_table(text, name)
            if not isinstance(table, dict):
                raise ConfigurationError(f"{path}, line {line}: [connections.{name}] must be a table.", hint=fix)
            table = dict(table)
            prompt = table.pop(KEY_PROMPT, False)
            if not isinstance(prompt, bool):
                raise ConfigurationError(f"{path}, line {line}: [connections.{name}] {KEY_PROMPT} must be true or "
                                         "false.", hint=fix)
            for old, new in ALIASES.items():
                if old in table:
                    value = table.pop(old)
                    table.setdefault(new, value)
            try:
                reg.connections[name] = Connection.from_dict(table, name=name, source="registry")
            except ConfigurationError as exc:
                raise ConfigurationError(f"{path}, line {line}, [connections.{name}]: {exc.message}",
                                         hint=exc.hint) from None
            if prompt:
                reg.key_prompt.add(name)
        return reg

    # ------------------------------------------------------------------ changes

    def put(self, name: str, conn: Connection, *, make_default: bool = False,
            key_prompt: bool | None = None) -> Connection:
        """Add or replace `name`. A key held in memory is not written: the entry records
        `key_prompt = true` and the key stays in this process only (foundry_magics.keys)."""
        check_name(name)
        saved = conn.replace(name=name, source="registry").with_key_env()
        if key_prompt is None:
            key_prompt = conn.auth == "key" and conn.api_key is not None
        if conn.auth == "key" and conn.api_key is not None:
            from foundry_magics.connections import keys

            keys.remember(name, conn.api_key)

        def op(reg: Registry) -> None:
            reg.connections[name] = saved
            if key_prompt:
                reg.key_prompt.add(name)
            else:
                reg.key_prompt.discard(name)
            if make_default or not reg.default or reg.default not in reg.connections:
                reg.default = name

        self._apply(op)
        return saved

    def remove(self, name: str) -> None:
        self._require(name)

        def op(reg: Registry) -> None:
            reg.connections.pop(name, None)
            reg.key_prompt.discard(name)
            if reg.default == name:
                reg.default = next(iter(sorted(reg.connections)), None)

        self._apply(op)

    def rename(self, old: str, new: str) -> Connection:
        self._require(old)
        check_name(new)
        if new in self.connections and new != old:
            raise ConfigurationError(f"A connection named {new!r} already exists.",
                                     hint="Choose another name, or remove that one first.")

        def op(reg: Registry) -> None:
            if old not in reg.connections:
                return  # removed meanwhile by another process
            conn = reg.connections.pop(old)
            reg.connections[new] = conn.replace(name=new)
            if old in reg.key_prompt:
                reg.key_prompt.discard(old)
                reg.key_prompt.add(new)
            if reg.default == old:
                reg.default = new

        self._apply(op)
        from foundry_magics.connections import keys

        secret = keys.lookup(old)
        if secret is not None:
            keys.remember(new, secret)
            keys.forget(old)
        return self.connections[new]

    def set_default(self, name: str | None) -> None:
        if name is not None:
            self._require(name)

        def op(reg: Registry) -> None:
            reg.default = name

        self._apply(op)

    def _require(self, name: str) -> None:
        if name not in self.connections:
            names = ", ".join(sorted(self.connections)) or "none saved yet"
            raise ConfigurationError(f"No saved connection named {name!r} in {self.path}.",
                                     hint=f"Saved connections: {names}.")

    def _apply(self, op: Callable[["Registry"], None]) -> None:
        op(self)
        self._ops.append(op)

    # ------------------------------------------------------------------ writing

    def to_toml(self) -> str:
        import tomli_w

        doc: dict[str, Any] = {}
        if self.default:
            doc["default"] = self.default
        tables: dict[str, Any] = {}
        for name, conn in sorted(self.connections.items()):
            table = conn.to_dict()
            if name in self.key_prompt:
                table[KEY_PROMPT] = True
            tables[name] = table
        doc["connections"] = tables
        text = tomli_w.dumps(doc)
        # Belt and braces: to_dict() never has the key, and this proves it for every write.
        for conn in self.connections.values():
            if conn.api_key is not None and conn.api_key.get() in text:  # pragma: no cover - defensive
                raise ConfigurationError("Refusing to write a key into the registry.")
        return text

    def save(self) -> None:
        """Write the changes made through this object, merged with the file as it is now."""
        with locked(self.path):
            if self._ops:
                fresh = Registry.load(self.path)  # raises (and writes nothing) if the file is corrupt
                for op in self._ops:
                    op(fresh)
                self.default, self.connections, self.key_prompt = fresh.default, fresh.connections, fresh.key_prompt
            elif self.path.exists():
                Registry.load(self.path)  # never overwrite a file we could not read
            atomic_write(self.path, self.to_toml())
            self._ops.clear()


# ---------------------------------------------------------------------- one-call helpers


def save_connection(name: str, conn: Connection, *, make_default: bool = False, key_prompt: bool | None = None,
                    path: Path | None = None) -> Connection:
    """Save `conn` as `name` (see Registry.put) and write the file. Returns the saved connection."""
    reg = Registry.load(path)
    saved = reg.put(name, conn, make_default=make_default, key_prompt=key_prompt)
    reg.save()
    return saved


def delete_connection(name: str, *, path: Path | None = None) -> None:
    reg = Registry.load(path)
    reg.remove(name)
    reg.save()
    from foundry_magics.connections import keys

    keys.forget(name)


def rename_connection(old: str, new: str, *, path: Path | None = None) -> Connection:
    reg = Registry.load(path)
    conn = reg.rename(old, new)
    reg.save()
    return conn


def set_default(name: str | None, *, path: Path | None = None) -> None:
    reg = Registry.load(path)
    reg.set_default(name)
    reg.save()


# ---------------------------------------------------------------------- file plumbing


def atomic_write(path: Path, text: str) -> None:
    """A crash leaves either the old file or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".connections-", suffix=".toml", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


@contextmanager
def locked(path: Path, timeout: float = LOCK_TIMEOUT) -> Iterator[None]:
    """An exclusive lock between processes for a read-modify-write of `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = path.with_name(path.name + ".lock")
    deadline = time.monotonic() + timeout
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: an O_EXCL lock file
        fcntl = None  # type: ignore[assignment]
    if fcntl is not None:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise _busy(lock) from None
                    time.sleep(0.01)
            try:
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)
        return
    while True:  # pragma: no cover - Windows
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
            os.close(fd)
            break
        except FileExistsError:
            try:
                if time.time() - lock.stat().st_mtime > 2 * timeout:
                    lock.unlink()  # left behind by a crashed writer
                    continue
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise _busy(lock) from None
            time.sleep(0.01)
    try:  # pragma: no cover - Windows
        yield
    finally:  # pragma: no cover - Windows
        try:
            lock.unlink()
        except OSError:
            pass


def _busy(lock: Path) -> ConfigurationError:
    return ConfigurationError(f"Another process has held {lock} for over {LOCK_TIMEOUT:.0f} s.",
                              hint="Try again; if no other notebook is saving a connection, delete that lock file.")


def _line(text: str, n: int) -> str:
    lines = text.splitlines()
    return lines[n - 1].strip()[:80] if 0 < n <= len(lines) else ""


def _find(text: str, key: str) -> int:
    for i, line in enumerate(text.splitlines(), 1):
        if line.strip().startswith(key):
            return i
    return 0


def _find_table(text: str, name: str) -> int:
    """The line of `[connections.NAME]` (quoted or not), for messages."""
    pat = re.compile(r"^\s*\[\s*connections\s*\.\s*(\"|')?" + re.escape(name) + r"(\"|')?\s*\]")
    for i, line in enumerate(text.splitlines(), 1):
        if pat.match(line):
            return i
    return _find(text, "[connections")
