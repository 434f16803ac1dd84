"""OKX: spot, margin, swaps and options; keys carry a passphrase."""
