"""The shapes every family shares: the result schema, events and phases, recipes, errors."""
