"""Small helpers: atomic writes, the environment record, the device choice,
and what the command-line tools share (their arguments, the one way a
usage or data error ends a tool)."""
