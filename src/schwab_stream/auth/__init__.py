"""Schwab OAuth: the token file (`token_store`), the token and REST client (`client`), and the
interactive browser login (`login`)."""
