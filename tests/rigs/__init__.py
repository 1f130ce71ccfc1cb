"""Broker rigs for the tests beyond one plain 3.10 node (issue 14, design/RABBITMQ.md).

- :mod:`rigs.rabbitmq4`: a RabbitMQ 4.0 node from the Debian 13 chroot that scripts/_setup.sh
  builds and caches, optionally denying deprecated features as RabbitMQ 4.3 does.
- :mod:`rigs.tls`: a CA, server and client certificates made by the tests, and a 3.10 node
  with a TLS listener (and the EXTERNAL mechanism).
- :mod:`rigs.cluster`: three 3.10 nodes clustered on loopback.

Every rig starts its processes in their own process group and stops them by pid / group,
never by a name; state lives in a temporary directory removed on stop.
"""
