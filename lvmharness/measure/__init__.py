"""Measurements: one metric, one module (latency, flops, memory)."""
