"""Bybit (v5 unified API): spot, margin, linear perpetuals and options."""
