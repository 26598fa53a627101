"""Reference servers the harness measures modelserve against (each runs as its own process)."""
