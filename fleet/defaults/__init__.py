"""fleet's built-in definitions (the seed's pipeline and 52-agent fleet); replaceable by users."""
