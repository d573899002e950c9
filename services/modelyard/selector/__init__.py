"""The selector service: chooses the best model for a task (scoring in `modelyard._native`)."""
