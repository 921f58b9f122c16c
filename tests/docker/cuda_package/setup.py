"""A local package with a CUDA extension, as users build flash-attn or apex: `pip install --no-build-isolation .`
against the image's torch (the docker tests install it in the -devel image)."""

from setuptools import setup
from torch.utils.cpp_extension import BuildExtension, CUDAExtension

setup(
    name="torchyard-cuda-package",
    version="0.1",
    packages=["torchyard_cuda_package"],
    ext_modules=[CUDAExtension("torchyard_cuda_package._scale", ["torchyard_cuda_package/scale.cu"])],
    cmdclass={"build_ext": BuildExtension},
)
