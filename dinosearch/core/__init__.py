"""Core: what every stage may use — crash-safe files, runtime, column roles, ranking, metrics."""
