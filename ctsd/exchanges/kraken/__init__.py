"""Kraken: spot and margin; no public testnet."""
