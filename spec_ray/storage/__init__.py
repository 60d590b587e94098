"""Storage: the trace tables' columns declared once (schema), their rows (records) and atomic Parquet files (traces).

``schema`` and ``traces`` are torch-free: the read side (``analysis``) imports them alone.
"""
