"""One blueprint per resource: recommendations, items, search, and operations."""
