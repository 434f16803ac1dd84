"""Building AIP-160 filter text from command-line values."""

from __future__ import annotations


def quote(value: str) -> str:
    """A double-quoted filter string: the daemon's filter grammar unescapes `\\"` and `\\\\`."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
