"""`cwm-agent batch`: many issues, in parallel, resumable, SWE-bench compatible."""
