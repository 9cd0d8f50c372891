"""Asset checks, beside the assets they check (one module per subject)."""
