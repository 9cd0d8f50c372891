"""Pure domain logic: no I/O, no heavy imports."""
