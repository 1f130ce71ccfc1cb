"""The oslo.messaging RPC protocol over RabbitMQ, on pika.

``wire`` and ``dispatcher`` are pure and may be used by the core; ``transport``, ``client`` and
``server`` do I/O and import pika, so import them only where a broker is needed.
"""
