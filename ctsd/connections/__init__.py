"""Exchange connections: validation, filtering and the service that manages them."""
