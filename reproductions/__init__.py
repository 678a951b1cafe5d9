"""Reproductions of the paper's table and figures, from the embedded offline default
up to the paper's GPU-scale models."""
