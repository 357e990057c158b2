"""Old import paths keep working: `foundry_magics.client`, `foundry_magics.engine.batch`, ...

Until the package was layered, its modules sat side by side (`foundry_magics/client.py`,
`foundry_magics/registry.py`, ...), and the Batch API lived in the engine
(`foundry_magics/engine/batch.py`, ...); notebooks out there import them by those names. A
meta path finder (the protocol only: importlib.abc costs milliseconds to import) answers
for exactly the names below, by importing the module at its new place and registering the
very same module object under the old name, so `foundry_magics.client.FoundryClient is
foundry_magics.rest.client.FoundryClient` and monkeypatching either one patches both.
"""

from __future__ import annotations

import importlib
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from importlib.abc import Loader
else:  # importlib.abc imports importlib.resources (~35 ms): the loader protocol is all that is used
    Loader = object

__all__ = ["OLD_PATHS", "install"]

# old module (dotted, under foundry_magics) -> where it lives now
OLD_PATHS = {
    "client": "rest.client",
    "auth": "rest.auth",
    "models": "rest.models",
    "routes": "rest.routes",
    "schemas": "rest.schemas",
    "sse": "rest.sse",
    "retry": "rest.retry",
    "probe": "rest.probe",
    "session": "connections.session",
    "registry": "connections.registry",
    "discovery": "connections.discovery",
    "keys": "connections.keys",
    "paths": "defaults",
    "looper": "engine.looper",
    "pacing": "engine.pacing",
    "report": "engine.report",
    "magics": "notebook.magics",
    "magic_args": "notebook.magic_args",
    "prompting": "notebook.prompting",
    "conversations": "notebook.conversations",
    "render": "notebook.render",
    "progress": "notebook.progress",
    "widgets": "notebook.widgets",
    "interpolate": "notebook.interpolate",
    "dataframe": "frames.accessor",
    "pandas_hook": "frames.hook",
    "engine.batch": "batch_api",
    "engine.batch_input": "batch_api.inputs",
    "engine.batch_results": "batch_api.results",
    "engine.batch_io": "rest.batches",
}
_PREFIX = "foundry_magics."


class _Alias(Loader):
    """Loader that hands back the module imported under its new name."""

    def __init__(self, target: str) -> None:
        self.target = target

    def create_module(self, spec: Any) -> Any:
        return importlib.import_module(self.target)

    def exec_module(self, module: Any) -> None:  # already executed under its own name
        pass


class _OldPathFinder:
    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        if not fullname.startswith(_PREFIX):
            return None
        new = OLD_PATHS.get(fullname[len(_PREFIX):])
        if new is None:
            return None
        from importlib.machinery import ModuleSpec

        return ModuleSpec(fullname, _Alias(_PREFIX + new))


_finder = _OldPathFinder()


def install() -> None:
    if _finder not in sys.meta_path:
        sys.meta_path.append(_finder)
