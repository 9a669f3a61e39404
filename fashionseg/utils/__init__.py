"""Small helpers: atomic writes, the environment record, the device choice."""
