"""Running under an operator: systemd notification and watchdog, metrics export."""
