"""Seed-vectorised fine-tuning: K seeded runs of one configuration trained in one process.

`train_group(specs, ctx)` (harness.training.vectorised.engine) is the entry point;
`harness.experiment.engines` says which recipes it supports. Submodules are imported on use so that importing
the package stays cheap.
"""
