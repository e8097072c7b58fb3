"""What an experiment is: spec types, experiment files, tasks and their data, run identity (no torch)."""
