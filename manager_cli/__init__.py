"""managerctl: an operator toolkit for services built on the OpenStack Manager pattern.

The package imports nothing heavy at import time (no pika, no oslo.config, no rich), so that the
console script starts fast; import the submodules you need.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
