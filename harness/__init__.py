"""Multi-seed fine-tuning instability harness."""

__version__ = "0.1.0"
