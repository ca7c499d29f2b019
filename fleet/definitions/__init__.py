"""What the fleet is: the pipeline (handoff map), the protocols file, the agent catalogue
and instructions. Pure data and validation: no store, no broker."""
