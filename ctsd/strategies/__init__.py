"""Trading strategies as plugins: pure functions from a market snapshot and portfolio to intents.

Public surface: `model` (the frozen values a strategy reads and returns),
`params` (parameter schemas and validation), `base` (the `StrategyFactory` /
`Strategy` protocols a plugin implements), `registry` (discovery through the
`cts.strategies` entry point group). Built-ins: `sma_cross`, `grid`.
This package imports neither the engine nor any exchange code.
"""
