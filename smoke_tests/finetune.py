"""A short mixed-precision fine-tune of ResNet-50 and DeiT-Small: the whole training path, end to end.

DeiT-Small is torchvision's VisionTransformer in DeiT-S shape (torchvision ships no DeiT). Data is a
learnable synthetic set (a fixed pattern per class under noise) through a real DataLoader with workers
and pinned memory, or an ImageFolder given with --data. Weights start pretrained when the torch hub
cache (TORCH_HOME) holds them, else from scratch; the result says which.
"""

from __future__ import annotations

import os
import resource
from dataclasses import dataclass, replace
from pathlib import Path

from smoke_tests import measure, timers, verdicts
from smoke_tests.report import Result, failed, passed

CLASSES = 10
SEED = 0
NOISE = 1.0
NOISE_BANK = 64  # fixed noise images (38 MB at 224 pixels)
DEIT_S = {"patch_size": 16, "hidden_dim": 384, "num_layers": 12, "num_heads": 6, "mlp_dim": 1536}
DEIT_S_CHECKPOINT = "deit_small_patch16_224-cd65a155.pth"  # facebookresearch/deit's release file, timm key names


@dataclass(frozen=True)
class Sizes:
    image: int
    batch: int
    steps: int
    workers: int
    warmup: int = 3  # steps left out of images/s (cuDNN autotuning, allocator growth, worker start)


GPU_SIZES = {"resnet50": Sizes(224, 128, 50, 8), "deit-s": Sizes(224, 128, 50, 8)}
# Small enough for a CPU run of the whole suite in minutes on 2 cores (docs/benchmarks.md; bf16 convolutions are slow
# on CPUs, so ResNet-50 sees 32-pixel images there; DeiT-S keeps 64 pixels, 4 x 4 patches).
CPU_SIZES = {"resnet50": Sizes(32, 16, 24, 2), "deit-s": Sizes(64, 16, 24, 2)}
LEARNING_RATE = {"resnet50": 1e-3, "deit-s": 5e-4}


def amp_dtype(capability: tuple[int, int] | None) -> str:
    """The autocast dtype for a GPU of this compute capability (None: the CPU): bf16 where the tensor cores do it
    natively (Ampere, sm_80, and later), else fp16 with a GradScaler. torch.cuda.is_bf16_supported() also says
    yes for V100 and T4, where bf16 is emulated and slow."""
    return "bfloat16" if capability is None or capability >= (8, 0) else "float16"


def synthetic_dataset(size: int, length: int, classes: int = CLASSES, seed: int = SEED):
    import torch
    import torch.nn.functional as F
    from torch.utils.data import Dataset

    class SyntheticImages(Dataset):
        """Sample i: class i % classes, its smooth fixed pattern plus one of NOISE_BANK fixed noise images.

        The noise is drawn once: drawing 150k Gaussians per 224-pixel sample would make the DataLoader, not
        the GPU, set the images/s. Deterministic per index, so every run sees the same data.
        """

        def __init__(self):
            g = torch.Generator().manual_seed(seed)
            coarse = torch.randn(classes, 3, 4, 4, generator=g)
            self.patterns = F.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)
            self.noise = NOISE * torch.randn(NOISE_BANK, 3, size, size, generator=g)

        def __len__(self):
            return length

        def __getitem__(self, i):
            label = i % classes
            # 7919 is prime to NOISE_BANK: each noise image comes with several labels, so noise is no cue.
            return self.patterns[label] + self.noise[(i * 7919) % NOISE_BANK], label

    return SyntheticImages()


def image_folder(path: Path, size: int):
    from torchvision import datasets, transforms

    return datasets.ImageFolder(str(path), transforms.Compose([
        transforms.RandomResizedCrop(size), transforms.ToTensor(),
        transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
    ]))


def hub_checkpoint(filename: str) -> Path | None:
    import torch

    path = Path(torch.hub.get_dir()) / "checkpoints" / filename
    return path if path.is_file() else None


def resnet50(classes: int, image: int):
    import torch.nn as nn
    from torchvision.models import ResNet50_Weights, resnet50

    weights = ResNet50_Weights.IMAGENET1K_V2
    cached = hub_checkpoint(os.path.basename(weights.url))
    model = resnet50(weights=weights if cached else None)
    model.fc = nn.Linear(model.fc.in_features, classes)
    return model, f"pretrained ({cached.name})" if cached else "from scratch (no ImageNet weights in the hub cache)"


def deit_small(classes: int, image: int):
    from torchvision.models import VisionTransformer

    model = VisionTransformer(image_size=image, num_classes=classes, **DEIT_S)
    cached = hub_checkpoint(DEIT_S_CHECKPOINT)
    if not cached:
        return model, "from scratch (no DeiT-S weights in the hub cache)"
    import torch

    state = torch.load(cached, map_location="cpu", weights_only=True)
    missing, _ = model.load_state_dict(deit_to_torchvision(state.get("model", state), image), strict=False)
    if set(missing) != {"heads.head.weight", "heads.head.bias"}:
        raise ValueError(f"{cached} does not fit DeiT-S: missing {sorted(missing)[:5]}")
    return model, f"pretrained ({cached.name}, new {classes}-class head)"


def deit_to_torchvision(state: dict, image: int) -> dict:
    """DeiT's (timm's) ViT key names -> torchvision's, position embeddings resized to the image size; no head."""
    import torch
    import torch.nn.functional as F

    out = {"class_token": state["cls_token"], "conv_proj.weight": state["patch_embed.proj.weight"],
           "conv_proj.bias": state["patch_embed.proj.bias"],
           "encoder.ln.weight": state["norm.weight"], "encoder.ln.bias": state["norm.bias"]}
    pos = state["pos_embed"]
    grid = image // DEIT_S["patch_size"]
    if pos.shape[1] != grid * grid + 1:
        cls, patches = pos[:, :1], pos[:, 1:]
        side = int(patches.shape[1] ** 0.5)
        patches = patches.reshape(1, side, side, -1).permute(0, 3, 1, 2)
        # as timm's resample_abs_pos_embed does it when it loads DeiT at another size
        patches = F.interpolate(patches, size=(grid, grid), mode="bicubic", antialias=True)
        pos = torch.cat([cls, patches.permute(0, 2, 3, 1).reshape(1, grid * grid, -1)], dim=1)
    out["encoder.pos_embedding"] = pos
    names = {"norm1": "ln_1", "norm2": "ln_2", "attn.qkv": "self_attention.in_proj", "attn.proj":
             "self_attention.out_proj", "mlp.fc1": "mlp.0", "mlp.fc2": "mlp.3"}
    for i in range(DEIT_S["num_layers"]):
        for theirs, ours in names.items():
            for kind in ("weight", "bias"):
                suffix = f"_{kind}" if ours == "self_attention.in_proj" else f".{kind}"
                out[f"encoder.layers.encoder_layer_{i}.{ours}{suffix}"] = state[f"blocks.{i}.{theirs}.{kind}"]
    return out


MODELS = {"resnet50": resnet50, "deit-s": deit_small}


def class_counts(dataset, classes: int) -> list[int]:
    """How many samples each class has: the ImageFolder's targets, or the synthetic set's i % classes."""
    targets = getattr(dataset, "targets", None)
    if targets is None:
        return [len(range(c, len(dataset), classes)) for c in range(classes)]
    return [targets.count(c) for c in range(classes)]


def batches(loader):
    """The loader's batches, epoch after epoch (an ImageFolder may hold fewer than the steps need)."""
    if len(loader) == 0:
        raise ValueError(f"the data has {len(loader.dataset)} images, fewer than one batch of {loader.batch_size}")
    while True:
        yield from loader


def train(name: str, sizes: Sizes, data: Path | None = None, device_name: str | None = None, timer=None) -> dict:
    """Fine-tune one model; returns the figures (losses per step, images/s, memory, dtype, weights, device).

    timer: the clock for the steps (default: CUDA events on a GPU, the host clock on the CPU)."""
    import torch
    import torch.nn.functional as F
    from torch.utils.data import DataLoader

    device = torch.device(device_name or ("cuda" if torch.cuda.is_available() else "cpu"))
    cuda = device.type == "cuda"
    torch.manual_seed(SEED)
    dataset = image_folder(data, sizes.image) if data else synthetic_dataset(sizes.image, sizes.steps * sizes.batch)
    classes = len(dataset.classes) if data else CLASSES
    model, weights = MODELS[name](classes, sizes.image)
    layout = torch.channels_last if name == "resnet50" else torch.contiguous_format
    model = model.to(device, memory_format=layout).train()
    dtype = getattr(torch, amp_dtype(torch.cuda.get_device_capability(device) if cuda else None))
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    optimizer = torch.optim.AdamW(model.parameters(), lr=LEARNING_RATE[name])
    loader = DataLoader(dataset, batch_size=sizes.batch, shuffle=True, num_workers=sizes.workers, pin_memory=cuda,
                        drop_last=True, generator=torch.Generator().manual_seed(SEED))
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    data_iter, losses = batches(loader), []

    def step() -> None:
        x, y = next(data_iter)
        x = x.to(device, non_blocking=True, memory_format=layout)
        y = y.to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=dtype):
            loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        losses.append(loss.detach())  # no .item(): that would wait for the GPU every step

    step_ms = measure.time_steps(step, sizes.steps, timer or (timers.cuda(device) if cuda else timers.host()))
    data_iter.close()  # the loader's workers end here, not at garbage collection
    throughput = measure.images_per_s(step_ms, sizes.batch, sizes.warmup)
    figures = {
        "device": torch.cuda.get_device_name(device) if cuda else "cpu",
        "dtype": str(dtype).removeprefix("torch."),
        "grad_scaler": scaler.is_enabled(),
        "weights": weights,
        "data": str(data) if data else f"synthetic, {classes} classes, seed {SEED}",
        "image_size": sizes.image, "batch": sizes.batch, "steps": len(losses), "workers": sizes.workers,
        "warmup_steps": sizes.warmup,
        "images_per_s": round(throughput, 1) if throughput is not None else None,
        "step_ms": [round(ms, 2) for ms in step_ms],
        "losses": [round(v, 4) for v in torch.stack(losses).float().tolist()],
        "chance_loss": round(measure.chance_loss(class_counts(dataset, classes)), 4),
    }
    if cuda:
        figures["peak_memory_gib"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
    else:
        figures["peak_rss_gib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)
    return figures


def check(name: str, data: Path | None = None, steps: int | None = None) -> Result:
    import torch

    check_name = f"{name} amp"
    sizes = (GPU_SIZES if torch.cuda.is_available() else CPU_SIZES)[name]
    sizes = replace(sizes, steps=steps or sizes.steps, workers=min(sizes.workers, len(os.sched_getaffinity(0))))
    figures = train(name, sizes, data)
    verdict = verdicts.loss_falls(figures["losses"], figures["chance_loss"])
    memory = (f"peak {figures['peak_memory_gib']} GiB" if "peak_memory_gib" in figures
              else f"peak RSS {figures['peak_rss_gib']} GiB")
    amp = figures["dtype"] + (" with GradScaler" if figures["grad_scaler"] else "")
    summary = (f"ran on {figures['device']}, {amp}, {figures['weights']}; {verdict.reason}; "
               f"{figures['images_per_s']} images/s after {figures['warmup_steps']} warm-up steps, {memory}")
    return (passed if verdict.ok else failed)(check_name, summary, **figures)
