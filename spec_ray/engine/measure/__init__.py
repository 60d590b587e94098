"""Checkpoint metrics: per-node measurements of a pack, the whole-set passes behind them, beta* and H*, names."""
