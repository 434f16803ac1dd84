"""The `cts` command line: a thin, synchronous client of ctsd's ConnectionService.

Modules, each with one job:

- `main`: the argument parser and the dispatch (exit codes live here);
- `client`: turns `--addr` into a gRPC channel and holds what handlers share;
- `transport`: TLS, mutual TLS and the bearer token of that channel;
- `connections`, `exchanges`: one handler per command, request in, output out;
- `secrets_input`: where an API secret comes from (prompt, stdin, file);
- `output`: aligned tables for people, one JSON document for scripts;
- `views`: what a connection or an exchange looks like in those;
- `enums`: proto enum values as the words people type (`spot`, `one-way`);
- `errors`: a failed RPC rendered as the single line a user needs.

The CLI holds no business rules: the daemon validates, the CLI only shapes
requests and renders answers, so every client language behaves the same.
"""

import os

# gRPC's C core logs a failed TLS handshake at INFO on stderr, under the one
# `error: ...` line the CLI prints (which already names the cause). It reads
# the level once, when grpc is first imported, so it is set here, before any
# module of the CLI imports grpc; `GRPC_VERBOSITY=debug cts ...` still wins.
os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
