"""The managerctl console script: one lazily loaded click command group per module."""
