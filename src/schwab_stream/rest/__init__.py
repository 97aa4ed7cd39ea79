"""Schwab's market-data REST: `rest.client.MarketDataClient` (one per process, rate-limited,
retried), the answers as msgspec Structs (`rest.models`), and the sans-I/O rules it needs
(`rest.ratelimit`, `rest.candles`). Nothing is re-exported here, so the sans-I/O modules load
without httpx or the auth client."""
