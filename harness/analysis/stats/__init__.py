"""Statistical tools that know nothing about runs or papers: bootstrap intervals, ASO, power, sequential tests."""
