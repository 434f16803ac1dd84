"""Helpers shared by the test packages: a real daemon process, a gRPC channel."""
