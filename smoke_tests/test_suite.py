"""The smoke suite under pytest, where torch is (inside every image: `make test` runs this file there on the CPU,
all but test_check, whose checks `make smoke` runs in the same test session).

test_check runs each check as `python -m smoke_tests` does: PASS passes, FAIL fails with its reason, SKIPPED (no
GPU here) skips with its reason. The other tests prove, with torch and nothing else, what the checks rest on:
the conv set is ResNet-50's, the timing loops time what they say, DeiT weights in timm's layout compute what
timm computes, and a model that learns only the class frequencies fails.
"""

import pytest
import torch
import torch.nn.functional as F

from smoke_tests import cudnn, environment, finetune, measure, timers, verdicts
from smoke_tests.report import PASS, SKIPPED, expect_gpu, timed
from smoke_tests.suite import CHECKS, Options


@pytest.fixture(scope="session")
def options(pytestconfig) -> Options:
    return Options(environment.image_facts(), require_gpu=pytestconfig.getoption("--require-gpu"))


@pytest.mark.parametrize("key", list(CHECKS))
def test_check(key, options):
    name, check = CHECKS[key]
    result = expect_gpu(timed(name, check, options), options.require_gpu, options.host_gpus)
    if result.status == SKIPPED:
        pytest.skip(result.reason)
    assert result.status == PASS, result.reason


def test_the_conv_set_is_every_convolution_of_torchvisions_resnet50():
    from torchvision.models import resnet50

    model = resnet50().eval()
    seen = {}

    def record(name):
        def hook(module, inputs, output):
            seen[name] = (module.in_channels, module.out_channels, module.kernel_size[0], module.stride[0],
                          inputs[0].shape[-1], output.shape[-1], module.padding[0])
        return hook

    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Conv2d):
            module.register_forward_hook(record(name))
    with torch.no_grad():
        model(torch.zeros(1, 3, 224, 224))
    listed = {layer: (c.cin, c.cout, c.kernel, c.stride, c.size, c.out_size, c.kernel // 2)
              for c in cudnn.RESNET50_CONVS for layer in c.layers}
    assert listed == seen


def test_time_calls_on_the_cpu_times_a_real_convolution():
    x, w = torch.randn(8, 16, 32, 32), torch.randn(32, 16, 3, 3)
    syncs = []
    timer = timers.host(sync=lambda: syncs.append("sync"))
    ms = measure.time_calls(lambda: F.conv2d(x, w, padding=1), repeats=5, warmup=2, timer=timer)
    assert 0 < ms < 10_000
    assert len(syncs) == 4  # before the first mark, in each of the two marks, after the last


class StepClock:
    """A clock for the real training loop: the warm-up steps 'take' 1000 ms, every later one 10 ms."""

    def __init__(self, warmup):
        self.warmup, self.marks, self.synced_after = warmup, 0, None

    def mark(self):
        self.marks += 1
        return self.marks - 1

    def elapsed_ms(self, start, end):
        assert end == start + 1 and self.synced_after == self.marks, "read before the final sync"
        return 1000.0 if start < self.warmup else 10.0

    def sync(self):
        self.synced_after = self.marks


def test_training_images_per_s_is_the_steady_state_after_the_warm_up_steps():
    sizes = finetune.Sizes(image=32, batch=4, steps=6, workers=0, warmup=2)
    clock = StepClock(sizes.warmup)
    figures = finetune.train("resnet50", sizes, timer=measure.Timer(clock.mark, clock.elapsed_ms, clock.sync))
    assert clock.marks == sizes.steps + 1 and figures["steps"] == sizes.steps == len(figures["losses"])
    assert figures["step_ms"] == [1000.0, 1000.0, 10.0, 10.0, 10.0, 10.0]
    assert figures["images_per_s"] == 400.0  # 4 steps of 4 images in 40 ms; counting the warm-up would give 11.8
    assert figures["device"] == "cpu" and figures["dtype"] == "bfloat16" and figures["grad_scaler"] is False
    assert figures["chance_loss"] == round(measure.chance_loss([3] * 4 + [2] * 6), 4)  # 24 images, 10 classes


def test_a_model_that_learns_only_the_class_prior_fails_the_loss_verdict():
    """Logits that ignore the image (one learnable bias per class), started confidently wrong, trained on the
    synthetic set's labels: the loss falls by far more than 25 %, to ln 10, and the verdict says FAIL."""
    dataset = finetune.synthetic_dataset(size=8, length=16 * 30)
    labels = torch.tensor([dataset[i][1] for i in range(len(dataset))]).reshape(30, 16)
    bias = torch.zeros(finetune.CLASSES)
    bias[0] = 4.0
    bias.requires_grad_()
    optimizer = torch.optim.Adam([bias], lr=0.2)
    losses = []
    for batch in labels:
        loss = F.cross_entropy(bias.expand(len(batch), -1), batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    chance = measure.chance_loss(finetune.class_counts(dataset, finetune.CLASSES))
    assert sum(losses[-5:]) / 5 <= 0.75 * sum(losses[:5]) / 5  # the fall alone would pass
    assert sum(losses[-5:]) / 5 == pytest.approx(chance, rel=0.05)  # at chance, give or take batch composition
    verdict = verdicts.loss_falls(losses, chance)
    assert not verdict.ok and "learned the class frequencies, not the images" in verdict.reason


DIM, HEADS = finetune.DEIT_S["hidden_dim"], finetune.DEIT_S["num_heads"]


def deit_s_state_dict_in_timms_layout(seed=0) -> dict:
    """Random weights under the names and shapes of timm's deit_small_patch16_224 (and of the DeiT release file):
    PatchEmbed `patch_embed.proj`, `cls_token`, `pos_embed`, per block `norm1`, `attn.qkv`, `attn.proj`, `norm2`,
    `mlp.fc1`, `mlp.fc2`, then `norm` and the ImageNet `head`. Norms get random weights too, so a swapped
    mapping cannot hide behind ones and zeros."""
    g = torch.Generator().manual_seed(seed)

    def r(*shape, scale=0.02):
        return torch.randn(*shape, generator=g) * scale

    state = {"cls_token": r(1, 1, DIM), "pos_embed": r(1, 197, DIM), "patch_embed.proj.weight": r(DIM, 3, 16, 16),
             "patch_embed.proj.bias": r(DIM), "norm.weight": 1 + r(DIM, scale=0.1), "norm.bias": r(DIM),
             "head.weight": r(1000, DIM), "head.bias": r(1000)}
    for i in range(finetune.DEIT_S["num_layers"]):
        b = f"blocks.{i}."
        state |= {b + "norm1.weight": 1 + r(DIM, scale=0.1), b + "norm1.bias": r(DIM),
                  b + "attn.qkv.weight": r(3 * DIM, DIM), b + "attn.qkv.bias": r(3 * DIM),
                  b + "attn.proj.weight": r(DIM, DIM), b + "attn.proj.bias": r(DIM),
                  b + "norm2.weight": 1 + r(DIM, scale=0.1), b + "norm2.bias": r(DIM),
                  b + "mlp.fc1.weight": r(4 * DIM, DIM), b + "mlp.fc1.bias": r(4 * DIM),
                  b + "mlp.fc2.weight": r(DIM, 4 * DIM), b + "mlp.fc2.bias": r(DIM)}
    return state


def timm_deit_pre_logits(state: dict, x: torch.Tensor) -> torch.Tensor:
    """timm's VisionTransformer forward (forward_features, then forward_head(pre_logits=True)) for DeiT-S, written
    out from its modules: pre-norm blocks, LayerNorm eps 1e-6, exact GELU, the class token as the pooled output.
    Position embeddings for another grid are resampled as timm's resample_abs_pos_embed does (bicubic, antialias)."""
    pos = state["pos_embed"]
    grid = x.shape[-1] // 16
    if pos.shape[1] != grid * grid + 1:
        patches = pos[:, 1:].reshape(1, 14, 14, DIM).permute(0, 3, 1, 2)
        patches = F.interpolate(patches, size=(grid, grid), mode="bicubic", antialias=True)
        pos = torch.cat([pos[:, :1], patches.permute(0, 2, 3, 1).reshape(1, grid * grid, DIM)], dim=1)
    x = F.conv2d(x, state["patch_embed.proj.weight"], state["patch_embed.proj.bias"], stride=16)
    x = x.flatten(2).transpose(1, 2)
    x = torch.cat([state["cls_token"].expand(len(x), -1, -1), x], dim=1) + pos

    def norm(t, name):
        return F.layer_norm(t, (DIM,), state[name + ".weight"], state[name + ".bias"], eps=1e-6)

    def linear(t, name):
        return F.linear(t, state[name + ".weight"], state[name + ".bias"])

    for i in range(finetune.DEIT_S["num_layers"]):
        b = f"blocks.{i}."
        h = norm(x, b + "norm1")
        batch, tokens, _ = h.shape
        q, k, v = linear(h, b + "attn.qkv").reshape(batch, tokens, 3, HEADS, DIM // HEADS).permute(2, 0, 3, 1, 4)
        attention = (q @ k.transpose(-2, -1) * (DIM // HEADS) ** -0.5).softmax(dim=-1)
        x = x + linear((attention @ v).transpose(1, 2).reshape(batch, tokens, DIM), b + "attn.proj")
        x = x + linear(F.gelu(linear(norm(x, b + "norm2"), b + "mlp.fc1")), b + "mlp.fc2")
    return norm(x, "norm")[:, 0]


@pytest.mark.parametrize("image", [224, 64])  # the GPU fine-tune's size (no resampling) and the CPU's (4 x 4 grid)
def test_deit_weights_in_timms_layout_load_into_torchvisions_vit_and_compute_the_same(image, tmp_path, monkeypatch):
    state = deit_s_state_dict_in_timms_layout()
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    checkpoints = tmp_path / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    torch.save({"model": state}, checkpoints / finetune.DEIT_S_CHECKPOINT)  # the release file wraps it in "model"
    model, weights = finetune.deit_small(classes=10, image=image)
    assert weights == f"pretrained ({finetune.DEIT_S_CHECKPOINT}, new 10-class head)"
    model.heads = torch.nn.Identity()  # compare the features the new head sees
    x = torch.randn(2, 3, image, image, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(x), timm_deit_pre_logits(state, x), rtol=1e-4, atol=1e-4)


def test_a_checkpoint_of_another_shape_is_refused(tmp_path, monkeypatch):
    state = {k: v for k, v in deit_s_state_dict_in_timms_layout().items() if not k.startswith("blocks.11.")}
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    torch.save(state, tmp_path / "hub" / "checkpoints" / finetune.DEIT_S_CHECKPOINT)
    with pytest.raises(KeyError, match="blocks.11.norm1.weight"):
        finetune.deit_small(classes=10, image=224)


def test_the_torchaudio_checks_figures_tell_a_right_resample_and_spectrogram_from_wrong_ones():
    """The tone's right answers are known without torchaudio; a plausible mistake must fall outside the verdicts'
    tolerances, and torchaudio's own result well inside."""
    pytest.importorskip("torchaudio", reason="this image has no torchaudio (its matrix entry has no torchaudio key)")
    import torchaudio.functional as AF
    import torchaudio.transforms as T

    from smoke_tests import audio

    right, _ = audio.run_on("cpu")
    assert right["resample_error"] <= verdicts.RESAMPLE_TOLERANCE / 5
    assert right["tone_share"] >= verdicts.TONE_SHARE_FLOOR and right["peak_hz"] == audio.TONE_HZ
    source, expected = audio.tone(audio.SOURCE_RATE, "cpu"), audio.tone(audio.TARGET_RATE, "cpu")
    inner = slice(audio.EDGE, -audio.EDGE)
    as_if_44k = AF.resample(source, 44_100, audio.TARGET_RATE)[:, :expected.shape[1]]  # the tone at the wrong pitch
    one_late = torch.roll(AF.resample(source, audio.SOURCE_RATE, audio.TARGET_RATE), 1, dims=1)  # a sample off
    for wrong in (as_if_44k, one_late):
        error = audio.relative_error(wrong[:, inner], expected[:, inner])
        assert not verdicts.tone_resampled(error, audio.SOURCE_RATE, audio.TARGET_RATE).ok, error
    spectrogram = T.Spectrogram(n_fft=audio.N_FFT, hop_length=audio.HOP)
    noise = spectrogram(torch.randn(1, audio.TARGET_RATE, generator=torch.Generator().manual_seed(0))).mean(dim=(0, 2))
    peak = int(noise.argmax())
    share = (noise[max(peak - 2, 0):peak + 3].sum() / noise.sum()).item()
    assert not verdicts.tone_peak(peak * audio.TARGET_RATE / audio.N_FFT, audio.TONE_HZ, right["bin_hz"], share).ok


def test_the_torchaudio_check_skips_an_image_without_it_and_fails_one_that_lost_it():
    from smoke_tests import audio

    skipped = audio.check_torchaudio({"tag": "v2.6-cu118", "torch": "2.6.0", "torchaudio": None})
    assert (skipped.status, skipped.reason) == (SKIPPED, "this image carries no torchaudio (its matrix entry has no "
                                                         "torchaudio key)")
    pytest.importorskip("torchaudio", reason="this image has no torchaudio (its matrix entry has no torchaudio key)")
    replaced = audio.check_torchaudio({"tag": "v2.6-cu124", "torch": "2.6.0", "torchaudio": "2.5.1"})
    assert replaced.status == "FAIL" and "but the image records 2.5.1: something replaced it" in replaced.reason
