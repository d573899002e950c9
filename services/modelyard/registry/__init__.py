"""The registry service: the model catalog, persisted in SQLite, watchable."""
