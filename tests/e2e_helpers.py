"""What the browser test needs around it: Debian's Chromium (installed when allowed), a
JupyterLab server on 127.0.0.1 that cannot outlive its test, and small waiting helpers.

Nothing here reaches beyond 127.0.0.1 (apart from apt-get, when CI asks for it)."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"


def find_chromium() -> str | None:
    for path in CHROMIUM_CANDIDATES:
        if os.access(path, os.X_OK):
            return path
    return shutil.which("chromium")


def may_install() -> bool:
    """apt-get only as root, and only when CI (CI=true) or the developer (FOUNDRY_E2E_INSTALL=1) says so."""
    asked = os.environ.get("CI", "").lower() == "true" or os.environ.get("FOUNDRY_E2E_INSTALL") == "1"
    return asked and hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("apt-get") is not None


def ensure_chromium() -> tuple[str | None, str]:
    """(path, "") when Chromium is there (installing Debian's package if allowed), else (None, why not)."""
    path = find_chromium()
    if path:
        return path, ""
    if not may_install():
        return None, ("Debian's chromium is not installed (apt-get install -y chromium; the test installs it "
                      "itself when run as root with CI=true or FOUNDRY_E2E_INSTALL=1)")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    log = []
    for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "chromium"]):
        try:
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
        except subprocess.TimeoutExpired:
            return None, f"{' '.join(cmd)} took more than 10 minutes"
        log.append(proc.stdout[-2000:] + proc.stderr[-2000:])
        if proc.returncode != 0:
            return None, f"{' '.join(cmd)} failed (exit {proc.returncode}): {log[-1].strip()[-500:]}"
    path = find_chromium()
    return (path, "") if path else (None, "apt-get installed chromium but no chromium binary was found")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def clean_env(root: Path, azure_vars: tuple[str, ...]) -> dict[str, str]:
    """The server's (and so its kernels') environment: private Jupyter/IPython/foundry homes, no Azure."""
    env = {k: v for k, v in os.environ.items() if k not in azure_vars}
    env.pop("FOUNDRY_TEST_KEY", None)
    for var, sub in (("FOUNDRY_MAGICS_HOME", "fm-home"), ("IPYTHONDIR", "ipython"), ("JUPYTER_CONFIG_DIR", "jconfig"),
                     ("JUPYTER_DATA_DIR", "jdata"), ("JUPYTER_RUNTIME_DIR", "jruntime")):
        env[var] = str(root / sub)
    env["JUPYTER_PLATFORM_DIRS"] = "1"
    env["PYDEVD_DISABLE_FILE_VALIDATION"] = "1"
    return env


class JupyterLab:
    """`python -m jupyterlab` on 127.0.0.1:<free port> with a token, serving `notebooks_dir`.

    It runs in its own session under coreutils' `timeout`, so it (and its kernels) die after
    `lifetime` seconds even if the test process is killed; stop() kills the whole group."""

    def __init__(self, notebooks_dir: Path, state_dir: Path, env: dict[str, str], lifetime: float = 240):
        self.root, self.state, self.env, self.lifetime = notebooks_dir, state_dir, env, lifetime
        self.port = free_port()
        self.token = secrets.token_hex(16)
        self.proc: subprocess.Popen | None = None
        self.log_path = state_dir / "jupyterlab.log"

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str) -> str:
        return f"{self.base}/{path.lstrip('/')}?token={self.token}"

    def _write_settings(self) -> Path:
        # No "get notified about Jupyter news?" toast, no update checks: nothing outside 127.0.0.1.
        settings = self.state / "lab-user-settings"
        target = settings / "@jupyterlab" / "apputils-extension"
        target.mkdir(parents=True, exist_ok=True)
        (target / "notification.jupyterlab-settings").write_text(
            json.dumps({"fetchNews": "false", "checkForUpdates": False}))
        return settings

    def start(self, timeout: float = 60) -> "JupyterLab":
        settings = self._write_settings()
        cmd = [sys.executable, "-m", "jupyterlab", "--no-browser",
               "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={self.port}", "--ServerApp.port_retries=0",
               f"--IdentityProvider.token={self.token}", f"--ServerApp.root_dir={self.root}",
               "--ServerApp.open_browser=False", f"--LabApp.user_settings_dir={settings}",
               f"--LabApp.workspaces_dir={self.state / 'lab-workspaces'}",
               f"--ServerApp.shutdown_no_activity_timeout={int(self.lifetime)}",
               "--LabApp.news_url=None", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
               "--ServerApp.log_level=WARN"]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            cmd.append("--allow-root")  # CI runs as root in a container
        wrapper = shutil.which("timeout")
        if wrapper:
            cmd = [wrapper, "--kill-after=5", str(int(self.lifetime))] + cmd
        log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(cmd, cwd=str(self.root), env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"JupyterLab exited with {self.proc.returncode}:\n{self.log()}")
            try:
                opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
                with opener.open(self.url("api/status"), timeout=2) as r:
                    if r.status == 200:
                        return self
            except OSError:
                time.sleep(0.25)
        self.stop()
        raise RuntimeError(f"JupyterLab did not answer within {timeout:.0f} s:\n{self.log()}")

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-6000:]
        except OSError:
            return ""

    def stop(self) -> None:
        proc = self.proc
        if proc is None:
            return
        try:
            os.killpg(proc.pid, signal.SIGTERM)  # the timeout wrapper, the server and every kernel
        except ProcessLookupError:
            return
        try:
            proc.wait(8)
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # whatever of the group is left
        except ProcessLookupError:
            pass
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            pass

    def __enter__(self) -> "JupyterLab":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
