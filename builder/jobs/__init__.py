"""Jobs across nodes: one torchrun job for every engine: this host's containers, Kubernetes, Slurm; and the CI workflow."""
