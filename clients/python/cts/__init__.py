"""Client side of ctsd: the generated cts.v1 API (`cts.v1`) and the `cts` CLI."""
