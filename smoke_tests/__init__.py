"""GPU smoke tests that run inside every torchyard image (and on any host with torch)."""
