"""`cwm-agent batch`: many issues, in parallel, resumable, SWE-bench compatible."""

RAY_INSTALL_HINT = "pip install 'cwm-agent[ray]'"
