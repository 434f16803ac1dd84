"""Binance: spot, margin, USDⓈ-M futures and options."""
