"""Shared helpers for the magics tests (an InteractiveShell with the extension, an emulator)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output


@dataclass
class Ran:
    result: Any  # ExecutionResult
    outputs: list = field(default_factory=list)  # RichOutput list (displays and their updates)
    stdout: str = ""
    stderr: str = ""

    @property
    def value(self) -> Any:
        return self.result.result

    @property
    def texts(self) -> list[str]:
        return [o.data.get("text/plain", "") for o in self.outputs]

    @property
    def final(self) -> str:
        """The last text shown (the final state of the live display)."""
        return self.texts[-1] if self.texts else ""

    @property
    def everything(self) -> str:
        parts = [self.stdout, self.stderr]
        for o in self.outputs:
            parts.extend(str(v) for v in o.data.values())
        return "\n".join(parts)


def run(ip: InteractiveShell, code: str) -> Ran:
    with capture_output() as cap:
        result = ip.run_cell(code, store_history=True)
    return Ran(result, list(cap.outputs), cap.stdout, cap.stderr)


def make_shell() -> InteractiveShell:
    shell = InteractiveShell.instance()
    from foundry_magics.notebook import prompting

    prompting.reset()
    if "foundry_magics" in shell.extension_manager.loaded:
        shell.run_line_magic("unload_ext", "foundry_magics")
    shell.config.pop("FoundryMagics", None)  # %config values of an earlier test
    shell.run_line_magic("load_ext", "foundry_magics")
    return shell


def drop_shell(shell: InteractiveShell) -> None:
    from foundry_magics.notebook import prompting

    if "foundry_magics" in shell.extension_manager.loaded:
        shell.run_line_magic("unload_ext", "foundry_magics")
    shell.config.pop("FoundryMagics", None)
    prompting.reset()


def connect(ip: InteractiveShell, url: str, extra: str = "--auth none --model gpt-4o-mini") -> Ran:
    ran = run(ip, f"%foundry connect {url}/openai/v1 {extra}")
    assert ran.result.error_in_exec is None, ran.everything
    return ran


def bodies(emu: Any, path_part: str = "") -> list[dict]:
    return [body for (_m, target, _h, body) in emu.requests if path_part in target and isinstance(body, dict)]


@pytest.fixture
def ip(fm_home):
    shell = make_shell()
    yield shell
    drop_shell(shell)


@pytest.fixture(scope="module")
def emu():
    """A thread-mode emulator for one test module; it stops itself after 10 minutes."""
    from foundry_magics.emulator import Emulator

    e = Emulator(lifetime=600)
    e.start()
    yield e
    e.stop()
