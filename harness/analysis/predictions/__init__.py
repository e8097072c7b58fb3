"""Per-example analysis across seeds: prediction churn and agreement."""
