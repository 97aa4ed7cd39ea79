"""A local Schwab: OAuth, userPreference and the streamer websocket, for tests, demos and load."""
