"""Verification: turning many candidate patches for an instance into one.

The layer below the commands that verify (`run --attempts`, `best-of`, `batch`, `select`,
`evaluate`): it imports none of them. Its stages run cheapest first, each pruning with a
recorded reason: static checks, grouping of identical changes, an execution-free reward
model, then execution of the impacted tests in one warm runtime per instance.
"""
