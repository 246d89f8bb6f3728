"""`cwm-agent select`: one patch per instance out of many candidates (see README.md)."""
