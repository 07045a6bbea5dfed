"""feedstream: publishers' feeds in, clean deduplicated articles out on a Redis stream."""

__version__ = "0.1.0"
