"""Ctrl-C during a stream: stops at once, keeps the text so far marked interrupted, logs it."""

from __future__ import annotations

import signal
import sqlite3
import threading
import time

import pytest

from foundry_magics.notebook import render

from magics_helpers import connect, ip, run  # noqa: F401 - ip is a fixture

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def slow_emu():
    from foundry_magics.emulator import Emulator

    e = Emulator(token_delay=0.15, lifetime=300)
    e.start()
    yield e
    e.stop()


def _history(fm_home):
    db = sqlite3.connect(fm_home / "history.sqlite")
    try:
        return db.execute("SELECT prompt, reply, status FROM calls ORDER BY id").fetchall()
    finally:
        db.close()


def test_interrupt_while_rendering_keeps_partial_text(ip, slow_emu, fm_home, monkeypatch):
    connect(ip, slow_emu.url)
    real_update = render.LiveView.update
    seen = {"n": 0}

    def update(self, text):
        seen["n"] += 1
        if seen["n"] == 3:
            raise KeyboardInterrupt  # as if Ctrl-C arrived while the main thread handled a token
        return real_update(self, text)

    monkeypatch.setattr(render.LiveView, "update", update)
    ran = run(ip, "%%foundry -o partial\nDescribe the ocean in a few short words please")
    assert ran.result.error_in_exec is None
    view = ran.value
    assert view.interrupted and view.text and not view.complete
    assert ip.user_ns["partial"] == view.text
    assert "Interrupted" in ran.outputs[-1].data["text/markdown"]
    rows = _history(fm_home)
    assert rows[-1][2] == "interrupted" and rows[-1][1] == view.text


def test_real_sigint_stops_the_stream_at_once(ip, slow_emu, fm_home, monkeypatch):
    connect(ip, slow_emu.url)
    real_update = render.LiveView.update
    fired = {}

    def update(self, text):
        if "at" not in fired:
            fired["at"] = time.perf_counter()
            main = threading.main_thread().ident
            threading.Timer(0.2, lambda: signal.pthread_kill(main, signal.SIGINT)).start()
        return real_update(self, text)

    monkeypatch.setattr(render.LiveView, "update", update)
    t0 = time.perf_counter()
    ran = run(ip, "%%foundry\nTell me about the many moons of the outer planets in several sentences")
    took = time.perf_counter() - t0
    view = ran.value
    assert view is not None and view.interrupted, ran.everything
    # the full reply takes several seconds at 0.15 s per token; we stopped right after the signal
    assert time.perf_counter() - fired["at"] < 1.5 and took < 3.0
    assert _history(fm_home)[-1][2] == "interrupted"
    # the shell is usable afterwards, and the next cell is not affected
    monkeypatch.setattr(render.LiveView, "update", real_update)
    slow_emu.configure(token_delay=0.0)
    try:
        again = run(ip, "%%foundry\nHello again")
        assert again.value.complete
    finally:
        slow_emu.configure(token_delay=0.15)


def test_interrupt_without_streaming(ip, slow_emu, fm_home, monkeypatch):
    connect(ip, slow_emu.url)
    from foundry_magics.notebook import prompting

    def send(self, call):
        call.started = time.perf_counter()
        raise KeyboardInterrupt

    monkeypatch.setattr(prompting.Prompter, "send", send)
    ran = run(ip, "%%foundry --no-stream\nHello")
    assert ran.result.error_in_exec is None
    assert "interrupted" in ran.everything.lower()
    assert _history(fm_home)[-1][2] == "interrupted"
