import torch  # noqa: F401 - first: it loads libc10 and the other libraries the extension links against

from torchyard_cuda_package._scale import scale  # noqa: F401
