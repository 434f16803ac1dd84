"""Sealing of API credentials under the master key (AES-256-GCM, bound to their row)."""
