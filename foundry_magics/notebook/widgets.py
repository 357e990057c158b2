"""The connection picker: plain ipywidgets (no custom JavaScript), so it works in JupyterLab,
Notebook 7, VS Code and Colab.

    import foundry_magics as fm
    p = fm.picker()          # or %foundry picker
    p                        # pick a saved connection, or fill the form; Test, Save, Use

Every part is an attribute so code and tests can drive it without a browser
(`p.endpoint.value = ...`, `p.test_button.click()`): `connections`, `name`, `endpoint`,
`auth` (entra/key/none), `key_env`, `key`, `key_header`, `model`, `make_default`,
`test_button`, `save_button`, `use_button`, `status`, `info`, `out`.

A key pasted into `key` is read into process memory (`connections.Secret`) and the field is
cleared at once: its value is never sent back to the browser, never echoed, and so never in
the widget state a notebook saves. Saving records that the key must be supplied again.
This module is a face: testing lives in `probe`, saving in `registry`, the current
connection in `session`.

This module imports ipywidgets at the top: it is itself imported only on first use
(`fm.picker` resolves lazily).
"""

from __future__ import annotations

import functools
import html
from typing import Any, Callable

import ipywidgets as w
from traitlets import Unicode

from foundry_magics.connections import keys, session
from foundry_magics.connections.connection import Connection, Secret
from foundry_magics.connections.registry import Registry, registry_path, save_connection
from foundry_magics.errors import ConfigurationError, FoundryError
from foundry_magics.rest.probe import ProbeResult, probe

__all__ = ["ConnectionPicker", "picker", "KeyField"]

NEW = ""  # value of the "new connection" entry in `connections`
KEY_HEADERS = ("api-key", "Authorization", "Ocp-Apim-Subscription-Key")
_STYLE = {"description_width": "110px"}


def _wide() -> w.Layout:
    """One Layout per widget: hiding one row (display none) must not hide the others."""
    return w.Layout(width="min(640px, 100%)")
_KEY_PLACEHOLDER = "paste a key (kept in memory only), or leave empty to use the variable"


class KeyField(w.Password):
    """A Password field whose non-empty value never travels from the kernel to the browser
    and is never echoed back, so it cannot reach saved widget state."""

    value = Unicode("", help="The key typed or pasted; read and cleared at once.").tag(sync=True, echo_update=False)

    def _should_send_property(self, key: str, value: Any) -> bool:
        if key == "value" and value:
            self._states_to_send.discard(key)
            return False
        return super()._should_send_property(key, value)

    def _repr_keys(self):
        return (k for k in super()._repr_keys() if k != "value")


def _handler(method: Callable[..., None]) -> Callable[..., None]:
    """Show any error in `status` as one block (cause + fix), never a traceback, never the key."""

    @functools.wraps(method)
    def wrapper(self: "ConnectionPicker", *args: Any) -> None:
        try:
            method(self, *args)
        except FoundryError as exc:
            self._show_error(exc.message, exc.hint)
        except Exception as exc:  # a face never lets a traceback wall through
            self._show_error(f"{type(exc).__name__}: {exc}", None)

    return wrapper


class ConnectionPicker(w.VBox):
    """Create, test, save and select connections. See the module doc."""

    def __init__(self, *, credential: Any = None, probe_timeout: float = 15.0, **kwargs: Any) -> None:
        self.credential = credential  # an azure TokenCredential for Test (default: DefaultAzureCredential)
        self.probe_timeout = probe_timeout
        self.last_result: ProbeResult | None = None
        self._secret: Secret | None = None
        self._base: Connection | None = None  # the saved connection the form was filled from
        self._known: dict[str, Connection] = {}
        self._key_prompt: set[str] = set()
        self._programmatic = 0
        self._touched: set[str] = set()

        def text(**kw: Any) -> w.Text:
            return w.Text(style=_STYLE, layout=_wide(), **kw)

        self.connections = w.Dropdown(description="Connection", options=[("New connection…", NEW)], value=NEW,
                                      style=_STYLE, layout=_wide())
        self.name = text(description="Name", placeholder="e.g. prod-gpt4o (letters, digits, - and _)")
        self.endpoint = text(description="Endpoint URL", continuous_update=False,
                             placeholder="any URL the Foundry portal shows, or http://localhost:PORT/v1")
        self.info = w.HTML(layout=w.Layout(margin="0 0 0 118px"))
        self.auth = w.ToggleButtons(description="Auth", options=[("Entra ID", "entra"), ("API key", "key"),
                                                                 ("None", "none")],
                                    value="key", style={**_STYLE, "button_width": "90px"})
        self.key_env = text(description="Key variable", placeholder="name of the environment variable holding the key")
        self.key = KeyField(description="Key", placeholder=_KEY_PLACEHOLDER, continuous_update=False,
                            style=_STYLE, layout=_wide())
        self.key_header = w.Combobox(description="Key header", options=KEY_HEADERS, value="api-key",
                                     ensure_option=False, style=_STYLE, layout=_wide())
        self.model = w.Combobox(description="Model", placeholder="deployment / model name (Test lists them)",
                                options=(), ensure_option=False, style=_STYLE, layout=_wide())
        self.make_default = w.Checkbox(description="Make it the default when saving", value=False, indent=False,
                                       layout=w.Layout(margin="0 0 0 118px"))
        self.test_button = w.Button(description="Test", icon="plug", tooltip="Send a tiny request and list models")
        self.save_button = w.Button(description="Save", icon="save",
                                    tooltip=f"Write {registry_path().name} (never a key)")
        self.use_button = w.Button(description="Use", icon="check", button_style="primary",
                                   tooltip="Make it the current connection for magics and DataFrames")
        self.status = w.HTML(layout=w.Layout(margin="4px 0 0 0"))
        self.out = w.Output()
        self._key_rows = (self.key_env, self.key, self.key_header)

        super().__init__(children=[
            self.connections, self.name, self.endpoint, self.info, self.auth, self.key_env, self.key,
            self.key_header, self.model, self.make_default,
            w.HBox([self.test_button, self.save_button, self.use_button], layout=w.Layout(margin="0 0 0 118px")),
            self.status, self.out,
        ], **kwargs)

        self.connections.observe(self._on_select, "value")
        self.endpoint.observe(self._on_endpoint, "value")
        self.auth.observe(self._on_auth, "value")
        self.key.observe(self._on_key, "value")
        for part in ("auth", "key_header", "model"):
            getattr(self, part).observe(functools.partial(self._touch, part), "value")
        self.test_button.on_click(self._on_test)
        self.save_button.on_click(self._on_save)
        self.use_button.on_click(self._on_use)
        self._refresh_connections()
        self._show_key_rows()

    def __repr__(self) -> str:
        return f"ConnectionPicker(name={self.name.value!r}, endpoint={self.endpoint.value!r}, auth={self.auth.value!r})"

    # ------------------------------------------------------------------ form <-> Connection

    def connection(self) -> Connection:
        """The connection the form describes (with the pasted key, in memory)."""
        endpoint = self.endpoint.value.strip()
        if not endpoint:
            raise ConfigurationError("The endpoint URL is empty.",
                                     hint="Paste the endpoint from the Foundry portal, or pick a saved connection.")
        auth = self.auth.value
        fields: dict[str, Any] = dict(
            auth=auth,
            name=self.name.value.strip() or None,
            model=self.model.value.strip() or None,
            key_header=self.key_header.value.strip() or "api-key",
        )
        key_env = self.key_env.value.strip() or None
        if auth == "key":
            fields["api_key_env"] = key_env
            fields["api_key"] = self._secret
        base = self._base
        if base is not None and base.endpoint == endpoint:
            # Keep what the form does not show (kind, api, api_version, scope).
            if auth != "key":
                fields["api_key"] = None
            conn = base.replace(source="picker", **fields)
        else:
            conn = Connection.from_url(endpoint, source="picker", **{k: v for k, v in fields.items() if v is not None})
        return conn.with_key_env()  # as the registry saves it

    def _fill(self, conn: Connection | None) -> None:
        """Show `conn` in the form (None: an empty form)."""
        with self._setting():
            self._base = conn
            self._secret = conn.api_key if conn is not None else None
            self.name.value = (conn.name or "") if conn is not None else ""
            self.endpoint.value = conn.endpoint if conn is not None else ""
            self.auth.value = conn.auth if conn is not None else "key"
            self.key_env.value = (conn.api_key_env or "") if conn is not None else ""
            self.key_header.value = conn.key_header if conn is not None else "api-key"
            self.model.options = ()
            self.model.value = (conn.model or "") if conn is not None else ""
        self._touched.clear()
        self._describe(conn)
        self._show_key_rows()
        self._show_key_state()

    # ------------------------------------------------------------------ observers

    @_handler
    def _on_select(self, change: dict) -> None:
        if self._programmatic:
            return
        name = change["new"]
        self.status.value = ""
        if name == NEW:
            self._fill(None)
            return
        conn = session.emulator_connection() if name == session.EMULATOR_NAME else self._known[name]
        self._fill(conn)
        if name in self._key_prompt and conn.api_key is None:
            var = f" or set ${conn.api_key_env}" if conn.api_key_env else ""
            self._show(f"The key of {name!r} was pasted when it was saved and is not stored anywhere: "
                       f"paste it again{var}.", "warn")

    @_handler
    def _on_endpoint(self, change: dict) -> None:
        if self._programmatic:
            return
        url = change["new"].strip()
        self._base = None
        if not url:
            self.info.value = ""
            return
        try:
            inferred = Connection.from_url(url)
        except ConfigurationError as exc:
            self.info.value = _span(exc.message, "error")
            return
        with self._setting():
            if "auth" not in self._touched and self._secret is None and not self.key_env.value.strip():
                self.auth.value = inferred.auth
            if "key_header" not in self._touched:
                self.key_header.value = inferred.key_header
            if inferred.model and ("model" not in self._touched or not self.model.value.strip()):
                self.model.value = inferred.model
        self._describe(inferred)
        self._show_key_rows()

    def _on_auth(self, change: dict) -> None:
        self._show_key_rows()

    def _touch(self, part: str, change: dict) -> None:
        if not self._programmatic:
            self._touched.add(part)

    @_handler
    def _on_key(self, change: dict) -> None:
        value = change["new"]
        if not value:
            return
        try:
            secret = Secret(value)
        finally:
            self.key.value = ""  # cleared as soon as it is read, whatever happens next
        self._secret = secret
        if self.auth.value != "key":
            with self._setting():
                self.auth.value = "key"
            self._show_key_rows()
        self._show_key_state()
        self._show("Key received: held in this kernel's memory only (the field was cleared). "
                   "It is never saved; Test, Save or Use it.", "ok")

    # ------------------------------------------------------------------ buttons

    @_handler
    def _on_test(self, _button: Any = None) -> None:
        conn = self.connection()
        with self._busy(f"Testing {html.escape(conn.label)} …"):
            result = probe(conn, credential=self.credential, timeout=self.probe_timeout)
        self.last_result = result
        if result.models:
            with self._setting():
                self.model.options = tuple(result.models)
                if not self.model.value.strip():
                    self.model.value = conn.model or result.models[0]
        if result.ok:
            text = "✓ " + result.summary()
            if result.warning:
                text += f"\n{result.warning}"
            self._show(text, "warn" if result.warning else "ok")
        else:
            self._show_error(result.error or "The test failed.", result.hint,
                             prefix=f"{result.credential_name}: " if result.credential_name else "")

    @_handler
    def _on_save(self, _button: Any = None) -> None:
        name = self.name.value.strip()
        if not name:
            raise ConfigurationError("Give the connection a name before saving.",
                                     hint="Type a name such as 'prod-gpt4o' in the Name field.")
        conn = self.connection()
        pasted = conn.auth == "key" and conn.api_key is not None
        saved = save_connection(name, conn, make_default=self.make_default.value)
        self._refresh_connections(select=name)
        note = ""
        if pasted:
            var = saved.api_key_env
            later = f"paste it again or set ${var}" if var else "paste it again"
            note = (" The key was not written: it stays in this kernel's memory; after a restart, "
                    f"{later}.")
        self._show(f"✓ Saved {name!r} to {registry_path()}.{note}", "ok")
        self.out.clear_output()
        with self.out:
            import tomli_w

            reg = Registry.load()
            table = reg.connections[name].to_dict()
            if name in reg.key_prompt:
                table["key_prompt"] = True
            print(tomli_w.dumps({"connections": {name: table}}))

    @_handler
    def _on_use(self, _button: Any = None) -> None:
        conn = self.connection()
        if conn.name and conn.api_key is not None:
            keys.remember(conn.name, conn.api_key)  # so connect(name) finds it in this kernel
        session.set_current(conn)
        model = f", model {conn.model}" if conn.model else ""
        self._show(f"✓ Now using {conn.label!r} ({conn.kind}{model}, {conn.key_source()}) for %%foundry "
                   "and DataFrames.", "ok")

    # ------------------------------------------------------------------ helpers

    def _refresh_connections(self, select: str | None = None) -> None:
        try:
            self._known = session.known_connections()
            self._key_prompt = Registry.load().key_prompt
        except ConfigurationError as exc:
            self._known, self._key_prompt = {}, set()
            self._show_error(exc.message, exc.hint)
        options = [("New connection…", NEW)]
        for name, conn in self._known.items():
            options.append((f"{name} — {conn.kind}, {conn.source or 'saved'}", name))
        if session.EMULATOR_NAME not in self._known:
            options.append((f"{session.EMULATOR_NAME} — built-in, offline", session.EMULATOR_NAME))
        with self._setting():
            self.connections.options = options
            self.connections.value = select if select in {v for _, v in options} else NEW
        if select and select in self._known:
            self._fill(self._known[select])

    def _describe(self, conn: Connection | None) -> None:
        if conn is None:
            self.info.value = ""
            return
        bits = [f"kind <b>{html.escape(conn.kind)}</b>"]
        if conn.api_version:
            bits.append(f"api-version {html.escape(conn.api_version)}")
        if conn.model:
            bits.append(f"model {html.escape(conn.model)}")
        bits.append(f"API {conn.api}")
        self.info.value = _span(" · ".join(bits), "muted", raw=True)

    def _show_key_rows(self) -> None:
        shown = None if self.auth.value == "key" else "none"
        for part in self._key_rows:
            part.layout.display = shown

    def _show_key_state(self) -> None:
        self.key.placeholder = ("a key is held in memory (never saved); paste to replace"
                                if self._secret is not None else _KEY_PLACEHOLDER)

    def _setting(self) -> "_Programmatic":
        return _Programmatic(self)

    def _busy(self, text: str) -> "_Busy":
        return _Busy(self, text)

    def _show(self, text: str, tone: str = "ok") -> None:
        self.status.value = _span(self._redact(text), tone)

    def _show_error(self, message: str, hint: str | None, prefix: str = "") -> None:
        text = f"✗ {prefix}{message}" + (f"\n{hint}" if hint else "")
        self._show(text, "error")

    def _redact(self, text: str) -> str:
        """Whatever a library put in a message, the pasted key is not shown."""
        if self._secret is not None:
            text = text.replace(self._secret.get(), "***")
        return text


class _Programmatic:
    """Marks changes made by the picker itself (not by the user)."""

    def __init__(self, picker: ConnectionPicker) -> None:
        self.picker = picker

    def __enter__(self) -> None:
        self.picker._programmatic += 1

    def __exit__(self, *exc: Any) -> None:
        self.picker._programmatic -= 1


class _Busy:
    def __init__(self, picker: ConnectionPicker, text: str) -> None:
        self.picker, self.text = picker, text

    def __enter__(self) -> None:
        p = self.picker
        for b in (p.test_button, p.save_button, p.use_button):
            b.disabled = True
        p.status.value = _span(self.text, "muted", raw=True)

    def __exit__(self, *exc: Any) -> None:
        for b in (self.picker.test_button, self.picker.save_button, self.picker.use_button):
            b.disabled = False


_TONES = {"ok": "var(--jp-success-color1, #2e7d32)", "warn": "var(--jp-warn-color1, #b26a00)",
          "error": "var(--jp-error-color1, #c62828)", "muted": "var(--jp-ui-font-color2, #666)"}


def _span(text: str, tone: str, raw: bool = False) -> str:
    body = text if raw else html.escape(text).replace("\n", "<br>")
    return f'<span style="color:{_TONES.get(tone, "inherit")}">{body}</span>'


def picker(**kwargs: Any) -> ConnectionPicker:
    """A new ConnectionPicker (display it, or let it be the cell's last expression)."""
    return ConnectionPicker(**kwargs)
