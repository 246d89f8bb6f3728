"""Test-time scaling: K attempts, reproduction tests, and the selection of one patch.

Entry points: ``attempts.run_with_attempts`` (Python), ``cli.run_scaled`` (for `cwm-agent
run --attempts K` and `best-of`; the flags are ``options.scaling_options``) and
``command.best_of`` (`best-of`).
"""
