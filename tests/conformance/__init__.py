"""Conformance: CWM's own released code, run beside cwm-agent on the same inputs."""
