"""Exception classes raised by the oslo peer, importable by the test process too.

A client that lists ``interop_errors`` in ``allowed_remote_exmods`` rebuilds :class:`Boom` as
its own class; any other client sees a RemoteError whose ``exc_type`` is ``'Boom'``.
"""


class Boom(Exception):
    """A custom exception from a module that is not ``builtins``."""
