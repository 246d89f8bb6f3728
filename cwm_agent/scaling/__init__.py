"""Test-time scaling: K attempts, reproduction tests, and the selection of one patch.

Entry points: ``attempts.run_with_attempts`` (Python), ``cli.scale_options`` and
``cli.run_scaled`` (for `cwm-agent run --attempts K`), ``command.best_of`` (`best-of`).
"""
