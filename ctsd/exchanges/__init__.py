"""Supported exchanges: declarative specs per venue, registered explicitly in `registry`."""
