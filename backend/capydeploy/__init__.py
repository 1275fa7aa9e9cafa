"""CapyDeploy: send a game from a PC (the Hub) to a handheld (the Agent) over the local network."""

__version__ = "0.1.0"
