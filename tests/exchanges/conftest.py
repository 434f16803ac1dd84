"""An in-process simulator and an exchange client factory pointed at it."""

from tests.support.exchange_clients import factory, make_client, server

__all__ = ["factory", "make_client", "server"]
