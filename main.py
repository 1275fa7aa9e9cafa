"""Decky Loader's entry point: finds our package, hands it Decky's folders, exposes the panel's calls."""

import os
import sys
from typing import Any

# Decky appends <plugin>/py_modules to sys.path; Decky's own builder puts a backend's output in
# bin/ instead. Put ours first either way, so our vendored versions are the ones imported.
_HERE = os.path.dirname(os.path.realpath(__file__))
for _folder in (os.path.join(_HERE, "bin", "py_modules"), os.path.join(_HERE, "py_modules")):
    if os.path.isdir(_folder):
        if _folder in sys.path:
            sys.path.remove(_folder)
        sys.path.insert(0, _folder)

import decky  # noqa: E402 - provided by Decky Loader's process

from capydeploy.decky import DeckyPlugin  # noqa: E402
from capydeploy.log_thread import loggers_up_from, write_logs_from_a_thread  # noqa: E402


class Plugin:
    def __init__(self) -> None:
        self._backend = DeckyPlugin(
            settings_dir=decky.DECKY_PLUGIN_SETTINGS_DIR,
            user_home=decky.DECKY_USER_HOME,
            plugin_dir=decky.DECKY_PLUGIN_DIR,
            logger=decky.logger,
            emit=decky.emit,
        )
        # Log lines are written by a thread, never by the event loop (a file write can stall).
        self._stop_logging = write_logs_from_a_thread(*loggers_up_from(decky.logger))

    async def _main(self) -> None:
        await self._backend.start()

    async def _unload(self) -> None:
        await self._backend.stop()
        self._stop_logging()

    async def _uninstall(self) -> None:
        await self._backend.uninstall()

    async def _migration(self) -> None:
        pass

    # The panel's calls, exactly as src/backend.ts names them.
    async def get_state(self) -> dict[str, Any]:
        return await self._backend.get_state()

    async def set_accept_connections(self, on: bool) -> None:
        return await self._backend.set_accept_connections(on)

    async def cancel_upload(self) -> bool:
        return await self._backend.cancel_upload()

    async def revoke_hub(self, hub_id: str) -> bool:
        return await self._backend.revoke_hub(hub_id)

    async def disconnect_hub(self) -> bool:
        return await self._backend.disconnect_hub()

    async def reset_pairing_lockout(self) -> None:
        return await self._backend.reset_pairing_lockout()

    async def set_agent_name(self, name: str) -> None:
        return await self._backend.set_agent_name(name)

    async def set_install_dir(self, path: str) -> None:
        return await self._backend.set_install_dir(path)

    async def pending_steam_requests(self) -> list[dict[str, Any]]:
        return await self._backend.pending_steam_requests()

    async def steam_request_done(self, request_id: str, result: dict[str, Any] | None) -> bool:
        return await self._backend.steam_request_done(request_id, result)
