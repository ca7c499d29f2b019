"""Operating the fleet: local services, doctor checks, retention, the demo, the Procfile."""
