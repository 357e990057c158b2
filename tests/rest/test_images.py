"""Images in prompts: values -> data: URLs / links, the content parts of chat and Responses
requests, the bytes in the cache key, readable errors, token estimates, logs without base64."""

from __future__ import annotations

import base64
import io
import struct
import zlib

import pytest

from foundry_magics.connections import Connection
from foundry_magics.errors import ConfigurationError
from foundry_magics.rest import images
from foundry_magics.rest.base import BaseClient
from foundry_magics.rest.images import ImageError
from foundry_magics.store.cache import request_key


def png(w: int = 2, h: int = 3, color: bytes = b"\xff\x00\x00") -> bytes:
    """A real, tiny PNG (so the header holds the size)."""
    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    raw = b"".join(b"\x00" + color * w for _ in range(h))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


JPEG = (b"\xff\xd8\xff\xe0" + struct.pack(">H", 16) + b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
        + b"\xff\xc0" + struct.pack(">HBHHB", 11, 8, 480, 640, 1) + b"\x01\x11\x00" + b"\xff\xd9")
GIF = b"GIF89a" + struct.pack("<HH", 10, 20) + b"\x00\x00\x00" + b";"
WEBP_VP8X = b"RIFF" + struct.pack("<I", 30) + b"WEBP" + b"VP8X" + struct.pack("<I", 10) + b"\x00\x00\x00\x00" \
    + (99).to_bytes(3, "little") + (49).to_bytes(3, "little")


@pytest.fixture
def client():
    return BaseClient(Connection.from_url("http://127.0.0.1:9/v1", auth="none", model="m"))


# ---------------------------------------------------------------------- recognising


@pytest.mark.parametrize("data, fmt, size", [
    (png(2, 3), "png", (2, 3)),
    (JPEG, "jpeg", (640, 480)),
    (GIF, "gif", (10, 20)),
    (WEBP_VP8X, "webp", (100, 50)),
])
def test_formats_and_sizes_are_read_from_the_header(data, fmt, size):
    assert images.sniff(data) == fmt
    assert images.size_of(data) == size


def test_values_become_urls(tmp_path):
    data = png()
    want = "data:image/png;base64," + base64.b64encode(data).decode()
    path = tmp_path / "cat.png"
    path.write_bytes(data)
    assert images.image_url(data) == want
    assert images.image_url(bytearray(data)) == want
    assert images.image_url(memoryview(data)) == want
    assert images.image_url(str(path)) == want
    assert images.image_url(path) == want
    assert images.image_url(path.as_uri()) == want
    assert images.image_url("https://example.com/cat.png") == "https://example.com/cat.png"
    assert images.image_url(want) == want
    assert images.image_url(GIF).startswith("data:image/gif;base64,")
    assert images.image_urls(None) == [] and images.image_urls(data) == [want]
    assert images.image_urls([data, "https://x/y.jpg"]) == [want, "https://x/y.jpg"]


class _FakePIL:
    """Duck-typed like a PIL.Image.Image (module PIL.Image, a save(fp, format=) method)."""

    format = None

    def save(self, fp, format=None):  # noqa: A002
        assert format == "PNG"
        fp.write(png())


_FakePIL.__module__ = "PIL.Image"


def test_a_pil_image_is_encoded_without_importing_pil():
    assert images.image_url(_FakePIL()) == images.image_url(png())


def test_a_real_pil_image_when_pillow_is_installed():
    Image = pytest.importorskip("PIL.Image", reason="Pillow is optional")
    img = Image.new("RGB", (4, 5), "red")
    url = images.image_url(img)
    data = base64.b64decode(url.partition(",")[2])
    assert url.startswith("data:image/png;base64,") and images.size_of(data) == (4, 5)
    buf = io.BytesIO()
    img.save(buf, format="JPEG")
    jpeg = Image.open(io.BytesIO(buf.getvalue()))
    assert images.image_url(jpeg).startswith("data:image/jpeg;base64,")  # keeps its own format


# ---------------------------------------------------------------------- errors


def test_unreadable_or_unknown_images_are_one_readable_error_naming_them(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("hello, not an image")
    cases = [
        (tmp_path / "missing.png", "missing.png", "cannot be read"),
        (text, "notes.txt", "is not a PNG, JPEG, GIF or WebP image"),
        (tmp_path, str(tmp_path), "is a folder"),
        (b"plain bytes", "of 11 bytes", "is not a PNG"),
        ("ftp://host/x.png", "ftp://host/x.png", "only http(s) URLs"),
        ("data:text/plain;base64,aGk=", "data:text/plain", "data:image/"),
        (12345, "of type int", "not something that can be sent"),
        ("", "", "empty"),
    ]
    for value, named, why in cases:
        with pytest.raises(ImageError) as info:
            images.image_url(value)
        err = info.value
        assert isinstance(err, ConfigurationError) and isinstance(err, ValueError)
        assert named in err.message and why in err.message, err.message
        assert err.hint and "Traceback" not in str(err)
        if not isinstance(value, int) and value != "" and not (isinstance(value, str) and "://" in value):
            with pytest.raises(ImageError):
                images.check_image(value)


def test_check_reads_only_the_header(tmp_path, monkeypatch):
    big = tmp_path / "big.png"
    big.write_bytes(png() + b"\x00" * 100_000)
    seen = []
    real_open = open

    def spy(path, mode="r", *a, **k):
        f = real_open(path, mode, *a, **k)
        seen.append(mode)
        return f

    monkeypatch.setattr("builtins.open", spy)
    images.check_image(big)
    assert seen == ["rb"]
    monkeypatch.setattr(images, "IMAGE_MAX_BYTES", 1000)
    with pytest.raises(ImageError, match="over the"):
        images.check_image(big)
    with pytest.raises(ImageError, match="over the"):
        images.image_url(big)


# ---------------------------------------------------------------------- requests


def test_chat_parts_and_the_bytes_in_the_cache_key(client):
    a, b = png(color=b"\x00\x00\xff"), png(color=b"\x00\xff\x00")
    _, body = client.build_chat("What is this?", images=[a, "https://example.com/x.png"], system="s")
    assert body["messages"][0] == {"role": "system", "content": "s"}
    assert body["messages"][1] == {"role": "user", "content": [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": images.image_url(a), "detail": "auto"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/x.png", "detail": "auto"}},
    ]}
    _, plain = client.build_chat("What is this?")
    assert plain["messages"] == [{"role": "user", "content": "What is this?"}]  # no images: unchanged
    _, body_b = client.build_chat("What is this?", images=[b, "https://example.com/x.png"], system="s")
    assert request_key("r", "chat", body) != request_key("r", "chat", body_b)  # other bytes, other key
    _, again = client.build_chat("What is this?", images=[a, "https://example.com/x.png"], system="s")
    assert request_key("r", "chat", body) == request_key("r", "chat", again)


def test_images_join_the_last_user_message_of_a_history(client):
    msgs = [{"role": "user", "content": "first"}, {"role": "assistant", "content": "ok"},
            {"role": "user", "content": "second"}]
    _, body = client.build_chat(messages=msgs, images=[png()])
    assert body["messages"][2]["content"][0] == {"type": "text", "text": "second"}
    assert body["messages"][2]["content"][1]["type"] == "image_url"
    assert msgs[2]["content"] == "second"  # the caller's list is left alone


def test_responses_parts(client):
    _, body = client.build_respond("Describe it", images=["https://example.com/a.png", GIF])
    assert body["input"] == [{"role": "user", "content": [
        {"type": "input_text", "text": "Describe it"},
        {"type": "input_image", "image_url": "https://example.com/a.png"},
        {"type": "input_image", "image_url": images.image_url(GIF)},
    ]}]
    history = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"},
               {"role": "user", "content": "and this?"}]
    _, body = client.build_respond(input=history, images=[GIF])
    assert body["input"][2]["content"] == [{"type": "input_text", "text": "and this?"},
                                           {"type": "input_image", "image_url": images.image_url(GIF)}]
    assert history[2]["content"] == "and this?"


def test_a_bad_image_fails_before_anything_is_built(client, tmp_path):
    with pytest.raises(ImageError, match="nope.png"):
        client.build_chat("x", images=[tmp_path / "nope.png"])


# ---------------------------------------------------------------------- estimates and logs


def test_image_tokens_follow_the_tile_rule():
    assert images.image_tokens(images.image_url(png(2, 3))) == 85 + 170
    big = JPEG.replace(struct.pack(">HH", 480, 640), struct.pack(">HH", 1024, 2048))  # 2048 x 1024
    assert images.size_of(big) == (2048, 1024)
    # 2048x1024 -> (fits 2048) -> short side 768: 1536x768 -> 3 x 2 tiles
    assert images.image_tokens(images.image_url(big)) == 85 + 170 * 6
    assert images.image_tokens("https://example.com/unknown.png") == 765
    assert images.image_tokens("https://example.com/x.png", detail="low") == 85


def test_history_and_dry_run_show_no_base64(fm_home):
    from foundry_magics.notebook.render import RequestView
    from foundry_magics.rest.base import CallRecord
    from foundry_magics.store.history import History

    data = png(64, 64) + b"\x00" * 3000
    client = BaseClient(Connection.from_url("http://127.0.0.1:9/v1", auth="none", model="m"))
    view = RequestView(client.dry_run("chat", "What is this?", images=[data]))
    b64 = base64.b64encode(data).decode()
    assert b64 in view["json"]["messages"][0]["content"][1]["image_url"]["url"]  # the value is exact
    shown = view.plain() + view.markdown()
    assert b64[:200] not in shown and "image/png" in shown and "64x64" in shown
    h = History()
    h.record(CallRecord("chat", "c", "m", view["json"], None, 0.1, error="x"))
    import sqlite3

    db = sqlite3.connect(fm_home / "history.sqlite")
    (request, prompt), = db.execute("SELECT request, prompt FROM calls").fetchall()
    db.close()
    h.close()
    assert b64[:200] not in request and "64x64" in request and prompt == "What is this?"
