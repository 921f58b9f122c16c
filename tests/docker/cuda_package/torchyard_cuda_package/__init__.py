from torchyard_cuda_package._scale import scale  # noqa: F401
