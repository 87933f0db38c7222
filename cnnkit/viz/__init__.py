"""Figures written to PNG with matplotlib (Agg backend: no display needed)."""
