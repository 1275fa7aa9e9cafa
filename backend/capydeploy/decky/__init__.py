"""The Decky plugin's backend: builds the Agent with Decky's folders and serves the panel."""

from .config import DEFAULTS_FILE, build_agent_config, load_plugin_defaults
from .plugin import AgentUnavailable, DeckyPlugin

__all__ = ["DEFAULTS_FILE", "AgentUnavailable", "DeckyPlugin", "build_agent_config", "load_plugin_defaults"]
