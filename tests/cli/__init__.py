"""Tests of the `cts` CLI: in-process against a fake service, and as a process against ctsd."""
