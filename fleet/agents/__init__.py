"""What an agent's handler sees and how it is run: the context, handler resolution, command
and webhook agents, usage reports."""
