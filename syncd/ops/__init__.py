"""Running under an operator: logs, Prometheus metrics and systemd's notify protocol."""
