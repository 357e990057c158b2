"""Images in prompts: paths, URLs, bytes and PIL images -> the content parts of chat and
Responses requests. Pure except for reading local files; no I/O at import time.

    image_url("cat.png")                 # -> "data:image/png;base64,..."
    image_url("https://.../cat.png")     # -> the URL as it is (the service fetches it)
    chat_content("What is this?", [img]) # -> [{"type": "text", ...}, {"type": "image_url", ...}]

Local files, bytes and PIL images are sent inline as `data:` URLs (base64), so an image's
bytes are part of the request body and therefore of its cache key; http(s) URLs are sent
as they are. What cannot be sent - a missing or unreadable file, bytes that are not a PNG,
JPEG, GIF or WebP image, a file over the size limit - is one `ImageError` (a
`ConfigurationError`, so also a `ValueError`) that names the path, before anything is sent.
Pillow is optional: a PIL image is recognised by its type, without importing PIL here.
"""

from __future__ import annotations

import base64
import binascii
import io
import math
import os
import re
from pathlib import Path
from typing import Any, Iterable, Sequence

from foundry_magics.defaults import (
    IMAGE_BASE_TOKENS,
    IMAGE_DETAIL,
    IMAGE_FORMATS,
    IMAGE_MAX_BYTES,
    IMAGE_TILE_TOKENS,
    IMAGE_UNKNOWN_TOKENS,
)
from foundry_magics.errors import ConfigurationError

__all__ = ["ImageError", "image_url", "image_urls", "check_image", "sniff", "chat_content", "responses_content",
           "attach_chat", "attach_responses", "image_tokens", "describe_image", "is_image_value", "size_of", "urls_in"]

_MIME = {"png": "image/png", "jpeg": "image/jpeg", "gif": "image/gif", "webp": "image/webp"}
_DATA_URL = re.compile(r"^data:image/(png|jpeg|jpg|gif|webp);base64,", re.IGNORECASE)
_KINDS = "a PNG, JPEG, GIF or WebP image"


class ImageError(ConfigurationError):
    """An image that cannot be sent: the message names it, the hint says what to do."""


def _label(value: Any) -> str:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return f"of {len(value):,} bytes"
    if isinstance(value, (str, os.PathLike)):
        text = str(value)
        return repr(text if len(text) <= 120 else text[:117] + "...")
    return f"of type {type(value).__name__}"


# ---------------------------------------------------------------------- recognising images


def sniff(data: bytes) -> str | None:
    """The image format of `data` from its first bytes ("png", "jpeg", "gif", "webp"), else None."""
    head = bytes(data[:16])
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    return None


def size_of(data: bytes, fmt: str | None = None) -> tuple[int, int] | None:
    """(width, height) read from the header, or None when it cannot be read."""
    fmt = fmt or sniff(data)
    try:
        if fmt == "png" and len(data) >= 24:
            return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
        if fmt == "gif" and len(data) >= 10:
            return int.from_bytes(data[6:8], "little"), int.from_bytes(data[8:10], "little")
        if fmt == "webp":
            return _webp_size(data)
        if fmt == "jpeg":
            return _jpeg_size(data)
    except (IndexError, ValueError):
        return None
    return None


def _webp_size(data: bytes) -> tuple[int, int] | None:
    chunk = data[12:16]
    if chunk == b"VP8 " and len(data) >= 30:
        return int.from_bytes(data[26:28], "little") & 0x3FFF, int.from_bytes(data[28:30], "little") & 0x3FFF
    if chunk == b"VP8L" and len(data) >= 25:
        bits = int.from_bytes(data[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X" and len(data) >= 30:
        return int.from_bytes(data[24:27], "little") + 1, int.from_bytes(data[27:30], "little") + 1
    return None


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    i, n = 2, len(data)
    while i + 9 < n:
        if data[i] != 0xFF:
            i += 1
            continue
        marker = data[i + 1]
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7 or marker == 0xFF:
            i += 1 if marker == 0xFF else 2
            continue
        length = int.from_bytes(data[i + 2:i + 4], "big")
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            return int.from_bytes(data[i + 7:i + 9], "big"), int.from_bytes(data[i + 5:i + 7], "big")
        i += 2 + length
    return None


def is_image_value(value: Any) -> bool:
    """Whether `value` is something `image_url` accepts (not whether it is readable)."""
    return isinstance(value, (str, bytes, bytearray, memoryview, os.PathLike)) or _is_pil(value)


def _is_pil(value: Any) -> bool:
    return type(value).__module__.split(".")[0] == "PIL" and callable(getattr(value, "save", None))


# ---------------------------------------------------------------------- values -> URLs


def _kind_of(value: Any) -> str:
    """"url", "data", "path", "bytes" or "pil"."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return "bytes"
    if _is_pil(value):
        return "pil"
    if isinstance(value, os.PathLike):
        return "path"
    if isinstance(value, str):
        low = value[:8].lower()
        if low.startswith(("http://", "https://")):
            return "url"
        if low.startswith("data:"):
            return "data"
        if low.startswith("file://"):
            return "path"
        if re.match(r"^[a-z][a-z0-9+.-]*://", low):
            raise ImageError(f"Image {_label(value)}: only http(s) URLs can be sent as links.",
                             hint="Download it first and pass the local path, or use an https:// URL.")
        return "path"
    raise ImageError(f"Image {_label(value)} is not something that can be sent.",
                     hint="Pass a file path, an http(s) URL, bytes, or a PIL image (pip install pillow).")


def _path(value: Any) -> Path:
    text = os.fspath(value)
    if isinstance(text, bytes):
        text = os.fsdecode(text)
    if text.lower().startswith("file://"):
        from urllib.parse import unquote, urlsplit

        text = unquote(urlsplit(text).path)
    if not text.strip():
        raise ImageError("An image path is empty.", hint="Give the path of a PNG, JPEG, GIF or WebP file.")
    return Path(text).expanduser()


def _read(path: Path, label: str, limit: int | None = None) -> bytes:
    try:
        size = path.stat().st_size
        if size > IMAGE_MAX_BYTES:
            raise ImageError(f"Image {label} is {size / 1e6:.1f} MB, over the {IMAGE_MAX_BYTES / 1e6:.0f} MB limit.",
                             hint="Resize or compress it first.")
        with open(path, "rb") as f:
            return f.read(limit) if limit is not None else f.read()
    except ImageError:
        raise
    except IsADirectoryError:
        raise ImageError(f"Image {label} is a folder, not a file.", hint="Give the path of an image file.") from None
    except OSError as exc:
        why = exc.strerror or type(exc).__name__
        raise ImageError(f"Image {label} cannot be read: {why}.",
                         hint=f"Check the path (relative paths start in {os.getcwd()}).") from None


def _checked(data: bytes, label: str) -> str:
    fmt = sniff(data)
    if fmt is None:
        head = bytes(data[:12])
        raise ImageError(f"Image {label} is not {_KINDS} (it starts with {head!r}).",
                         hint="Convert it to PNG or JPEG first.")
    if len(data) > IMAGE_MAX_BYTES:
        raise ImageError(f"Image {label} is {len(data) / 1e6:.1f} MB, over the {IMAGE_MAX_BYTES / 1e6:.0f} MB limit.",
                         hint="Resize or compress it first.")
    return fmt


def _data_url(data: bytes, fmt: str) -> str:
    return f"data:{_MIME[fmt]};base64," + base64.b64encode(data).decode("ascii")


def _pil_bytes(img: Any, label: str) -> tuple[bytes, str]:
    fmt = str(getattr(img, "format", None) or "").lower()
    fmt = fmt if fmt in IMAGE_FORMATS else "png"
    buf = io.BytesIO()
    try:
        img.save(buf, format=fmt.upper())
    except Exception as exc:  # noqa: BLE001 - Pillow raises many kinds (OSError, ValueError, KeyError)
        raise ImageError(f"Image {label} could not be encoded as {fmt.upper()}: {exc}.",
                         hint="Convert it first, e.g. img.convert('RGB').") from None
    return buf.getvalue(), fmt


def image_url(value: Any) -> str:
    """The URL to send for one image: http(s) as it is, anything else a base64 `data:` URL."""
    kind = _kind_of(value)
    if kind == "url":
        return value
    if kind == "data":
        if not _DATA_URL.match(value):
            raise ImageError(f"Image {_label(value[:40])}: "
                             "a data: URL must be data:image/(png|jpeg|gif|webp);base64,...",
                             hint="Pass the image's bytes or its path instead.")
        return value
    if kind == "pil":
        label = _label(value)
        data, fmt = _pil_bytes(value, label)
        return _data_url(data, fmt)
    if kind == "bytes":
        data = bytes(value)
        return _data_url(data, _checked(data, _label(value)))
    path = _path(value)
    label = _label(os.fspath(value) if not isinstance(value, str) else value)
    data = _read(path, label)
    return _data_url(data, _checked(data, label))


def image_urls(values: Any) -> list[str]:
    """`image_url` for one image or a list of them (None and [] mean no image)."""
    if values is None:
        return []
    if is_image_value(values):
        values = [values]
    return [image_url(v) for v in values]


def check_image(value: Any) -> None:
    """Raise ImageError if `value` cannot be sent, reading as little as possible (a file's
    first bytes, not the whole file): for checking a column of paths before a run."""
    kind = _kind_of(value)
    if kind == "url":
        return
    if kind == "data":
        image_url(value)
        return
    if kind == "pil":
        return
    if kind == "bytes":
        _checked(bytes(value[:16]), _label(value))
        if len(value) > IMAGE_MAX_BYTES:
            _checked(bytes(value), _label(value))
        return
    label = _label(os.fspath(value) if not isinstance(value, str) else value)
    _checked(_read(_path(value), label, limit=16), label)


# ---------------------------------------------------------------------- content parts


def chat_content(text: str | None, urls: Sequence[str], detail: str = IMAGE_DETAIL) -> list[dict[str, Any]]:
    """A chat message's content: the text part, then one image_url part per image."""
    parts: list[dict[str, Any]] = [{"type": "text", "text": text}] if text else []
    parts += [{"type": "image_url", "image_url": {"url": u, "detail": detail}} for u in urls]
    return parts


def responses_content(text: str | None, urls: Sequence[str]) -> list[dict[str, Any]]:
    """A Responses API message's content: input_text, then one input_image per image."""
    parts: list[dict[str, Any]] = [{"type": "input_text", "text": text}] if text else []
    parts += [{"type": "input_image", "image_url": u} for u in urls]
    return parts


def attach_chat(messages: list[dict[str, Any]], urls: Sequence[str]) -> None:
    """Add the images to the last user message of a chat request (in place)."""
    for m in reversed(messages):
        if m.get("role") == "user":
            content = m.get("content")
            if isinstance(content, list):
                m["content"] = [*content, *chat_content(None, urls)]
            else:
                m["content"] = chat_content(content, urls)
            return
    messages.append({"role": "user", "content": chat_content(None, urls)})


def attach_responses(payload: Any, urls: Sequence[str]) -> list[Any]:
    """The Responses API `input` with the images added to its (last) user message."""
    if isinstance(payload, str):
        return [{"role": "user", "content": responses_content(payload, urls)}]
    items = [dict(i) if isinstance(i, dict) else i for i in (payload or [])]
    for item in reversed(items):
        if isinstance(item, dict) and item.get("role") == "user":
            content = item.get("content")
            if isinstance(content, list):
                item["content"] = [*content, *responses_content(None, urls)]
            else:
                item["content"] = responses_content(content, urls)
            return items
    items.append({"role": "user", "content": responses_content(None, urls)})
    return items


# ---------------------------------------------------------------------- estimates


def _decoded(url: str) -> bytes | None:
    if not _DATA_URL.match(url):
        return None
    try:
        return base64.b64decode(url.partition(",")[2], validate=False)
    except (binascii.Error, ValueError):
        return None


def image_tokens(url: str, detail: str = IMAGE_DETAIL) -> int:
    """Input tokens an image costs (OpenAI's rule: 85, plus 170 per 512 px tile after scaling
    to fit 2048 x 2048 and then to 768 px on the short side). A link's size is not known here:
    IMAGE_UNKNOWN_TOKENS."""
    if detail == "low":
        return IMAGE_BASE_TOKENS
    data = _decoded(url)
    size = size_of(data) if data else None
    if not size or not all(size):
        return IMAGE_UNKNOWN_TOKENS
    w, h = map(float, size)
    scale = min(1.0, 2048 / max(w, h))
    w, h = w * scale, h * scale
    scale = min(1.0, 768 / min(w, h))
    w, h = w * scale, h * scale
    return IMAGE_BASE_TOKENS + IMAGE_TILE_TOKENS * math.ceil(w / 512) * math.ceil(h / 512)


def describe_image(url: str) -> str:
    """A short description for displays: `image/png, 12.3 kB, 640x480` or the link."""
    data = _decoded(url)
    if data is None:
        return url if len(url) <= 80 else url[:77] + "..."
    fmt = sniff(data) or "image"
    size = size_of(data, fmt)
    dims = f", {size[0]}x{size[1]}" if size else ""
    return f"{_MIME.get(fmt, fmt)}, {len(data) / 1000:.1f} kB{dims}"


def urls_in(body: Any) -> Iterable[str]:
    """The image URLs of a chat or Responses request body (for estimates and displays)."""
    if isinstance(body, dict):
        if body.get("type") == "image_url" and isinstance(body.get("image_url"), dict):
            yield str(body["image_url"].get("url") or "")
            return
        if body.get("type") == "input_image":
            yield str(body.get("image_url") or "")
            return
        for v in body.values():
            yield from urls_in(v)
    elif isinstance(body, list):
        for v in body:
            yield from urls_in(v)
