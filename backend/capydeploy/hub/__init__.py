"""The Hub: the client on a PC that finds agents, pairs and deploys games."""
