"""One router per resource: search, indexes and items, explain, health and metrics."""
