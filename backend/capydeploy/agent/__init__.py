"""The Agent: the WebSocket server on the handheld that receives and installs games."""
