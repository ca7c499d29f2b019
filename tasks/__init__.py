"""Celery task modules; workers import them through ``fleet.celery_app.TASK_MODULES``."""
