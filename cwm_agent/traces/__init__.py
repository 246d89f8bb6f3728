"""Execution traces in CWM's format: record (tracer, runner), render and parse (format),
compare (compare), and the `trace` commands (cli). Importing this package is cheap."""
