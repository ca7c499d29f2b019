"""Celery task modules; workers import them through ``fleet.app.celery_app.TASK_MODULES``."""
