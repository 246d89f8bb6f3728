"""cwm-agent: a coding agent for Meta FAIR's Code World Model tool protocol.

Importing the package has no side effects: nothing is printed and nothing is created.
"""

__version__ = "0.1.0"
