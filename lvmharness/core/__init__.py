"""The base: errors, value parsers, statistics, durable file I/O, output locations -- the standard library only."""
