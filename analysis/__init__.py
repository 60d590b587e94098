"""Queries over spec-ray's Parquet traces (figures and the claims report come later)."""
