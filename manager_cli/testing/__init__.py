"""What manager authors need to test their managers.

(The throwaway RabbitMQ and PostgreSQL servers of managerctl's own tests are under tests/rigs.)
"""
