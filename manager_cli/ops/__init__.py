"""What operators ask of running services, as library calls that return records.

No click and no rendering here (that is ``cli/``), and no AMQP frames (that is ``rpc/``):
``fleet`` calls many hosts of a topic over one connection, ``verdict`` turns what came back
into one decision and its exit code, ``probe`` and ``ping`` build on both; ``periodic`` runs
and lists a running service's tasks, ``capabilities`` asks services to publish and gathers what
they send (``capabilities show --live``, ``capabilities publish``).
"""
