"""What a set of seeded runs shows: spread, degenerate runs, expected max, early stopping, variance shares."""
