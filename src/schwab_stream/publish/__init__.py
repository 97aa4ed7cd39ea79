"""Publishing normalized events to Redis."""
