"""Builds the Agent's configuration from Decky's folders and the plugin's defaults file."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from ..agent.config import AgentConfig
from ..agent.settings import AgentSettings

DEFAULTS_FILE = "capydeploy-defaults.json"
"""Shipped in `defaults/`, which Decky's packaging flattens into the plugin folder."""

# Keys of the defaults file that configure the process (read at every start) ...
_CONFIG_KEYS = {"host": str, "port": int, "mdns": bool}
# ... and those that seed the Agent's settings (the user's later choices, in settings.json, win).
_SETTINGS_KEYS = set(AgentSettings.__dataclass_fields__) - {"agent_id"}


def load_plugin_defaults(path: Path, logger: logging.Logger) -> dict[str, Any]:
    """The defaults file as a dict; a missing or broken file gives {} and a log line, never a crash."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        logger.warning("no defaults file at %s; using built-in defaults", path)
        return {}
    except (OSError, ValueError) as error:
        logger.error("ignoring the defaults file %s: %s", path, error)
        return {}
    if not isinstance(raw, dict):
        logger.error("ignoring the defaults file %s: not a JSON object", path)
        return {}
    return raw


def build_agent_config(
    settings_dir: str | Path,
    user_home: str | Path,
    defaults: dict[str, Any],
    logger: logging.Logger,
) -> AgentConfig:
    """Settings and secrets in Decky's settings folder, games under the real user's home.

    `install_dir` in the defaults is relative to the user's home (default `Games`); it seeds the
    Agent's settings, so the panel can change it later. Shortcuts go through the panel's
    SteamClient bridge.
    """
    home = Path(user_home)
    config_values: dict[str, Any] = {}
    settings_defaults: dict[str, object] = {"install_dir": str(home / "Games")}
    for key, value in defaults.items():
        if key in _CONFIG_KEYS:
            expected = _CONFIG_KEYS[key]
            if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
                logger.error("defaults: %s must be a %s, not %r; ignored", key, expected.__name__, value)
                continue
            config_values[key] = value
        elif key in _SETTINGS_KEYS:
            if key == "install_dir" and isinstance(value, str) and value:
                settings_defaults[key] = str(home / Path(value).expanduser())  # absolute stays absolute
            else:
                settings_defaults[key] = value
        else:
            logger.warning("defaults: unknown key %r ignored", key)
    return AgentConfig(
        data_dir=Path(settings_dir),
        home=home,
        shortcut_backend="steam-client",
        defaults=settings_defaults,
        **config_values,
    )
