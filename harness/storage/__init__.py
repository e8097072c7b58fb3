"""How results are stored: Parquet parts, run records, which stored runs a spec uses, export."""
