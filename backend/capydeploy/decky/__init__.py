"""The Decky plugin's backend: builds the Agent with Decky's folders and serves the panel."""
