"""Generated cts.v1 messages and stubs; regenerate with `make proto`, never edit."""
