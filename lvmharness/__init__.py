"""lvmharness: measure what large vision models cost — time, FLOPs, memory — honestly."""

__version__ = "0.1.0"
