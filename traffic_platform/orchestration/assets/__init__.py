"""Assets by subject area; each module sets its own group name."""
