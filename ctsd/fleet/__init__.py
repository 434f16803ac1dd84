"""A fleet of daemons on one database: membership, engine leases with fencing, adoption, drain."""
