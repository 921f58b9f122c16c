"""torchyard: reproducible PyTorch GPU container images from one version matrix."""
