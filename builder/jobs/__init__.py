"""Jobs across nodes: one torchrun line for each engine (containers here, Kubernetes, Slurm), and the CI workflow."""
