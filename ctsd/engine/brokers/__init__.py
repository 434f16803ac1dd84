"""Brokers: `PaperBroker` simulates fills against live tickers, `LiveBroker` trades through an
exchange client. Both satisfy `base.Broker`; neither knows the other exists."""
