"""Bybit venue: placeholder until its module is written (answers 501 everywhere).

Replace this file wholesale with a module exporting `VENUE: Venue`, shaped like
`ctsd.sim.binance`.
"""

from ctsd.sim.venue import Venue, unimplemented_venue

VENUE: Venue = unimplemented_venue("bybit")
