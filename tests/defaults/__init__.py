"""Tests of the default 52-agent fleet: its catalogue, schedule and simulated handlers."""
