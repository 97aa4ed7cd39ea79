"""The streamer pipeline: field tables, sans-I/O protocol, normalization into events, the client."""
