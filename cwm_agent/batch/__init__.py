"""`cwm-agent batch`: many issues, a pool of workers, SWE-bench predictions (see README.md)."""
