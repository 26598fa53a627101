"""inference/runtimes."""
