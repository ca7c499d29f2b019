"""The Celery application: configuration, routing to per-stage queues, sending tasks,
the singleton beat and its staggered schedule, Flower's settings."""
