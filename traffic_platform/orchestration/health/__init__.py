"""Camera health: per-image features, the rules that flag problems, and the alerts."""
