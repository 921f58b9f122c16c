"""torchaudio, in an image that carries it (matrix.yaml's optional torchaudio key): a resample and a spectrogram of a
pure tone, on the CPU always and on the first GPU when there is one.

A tone is a signal whose right answers are known without torchaudio: resampled, it is the same tone sampled at the
new rate; its spectrogram holds its energy in the tone's frequency bin. A GPU's results are compared with the CPU's
too. The judgements are smoke_tests/verdicts.py's; the timing loop is smoke_tests/measure.py's.
"""

from __future__ import annotations

from smoke_tests import measure, timers, verdicts
from smoke_tests.report import Result, failed, passed, skipped

NAME = "torchaudio"
TONE_HZ = 1000
SOURCE_RATE, TARGET_RATE = 48_000, 16_000  # studio audio to what speech models take
SECONDS, CHANNELS = 2, 4
N_FFT, HOP = 1024, 256  # 15.625 Hz bins at 16 kHz: the 1 kHz tone is bin 64 exactly, so its energy has no leakage
# Frames left out at each end of the spectrum: their windows reach past the signal into the reflected padding
# (center=True), whose seam spreads energy into other bins (0.4 % of it in the whole 2 s, measured).
EDGE_FRAMES = N_FFT // (2 * HOP)
# Samples left out at each end of the comparison: there the resampling filter (torchaudio's default: 6 zero
# crossings each side, i.e. 18 output samples at 48 -> 16 kHz) reaches past the signal and sees zeros.
EDGE = 64
REPEATS, WARMUP = 10, 2


def tone(rate: int, device: str):
    """CHANNELS copies of a TONE_HZ sine, SECONDS long, at `rate` (computed in float64, then float32)."""
    import math

    import torch

    t = torch.arange(SECONDS * rate, dtype=torch.float64) / rate
    return torch.sin(2 * math.pi * TONE_HZ * t).float().repeat(CHANNELS, 1).to(device)


def relative_error(found, expected) -> float:
    return ((found.double() - expected.double()).norm() / expected.double().norm()).item()


def run_on(device: str) -> tuple[dict, dict]:
    """The resample and the spectrogram on one device: (figures, the two results on the CPU, for comparing)."""
    import torch
    import torchaudio.functional as F
    import torchaudio.transforms as T

    source = tone(SOURCE_RATE, device)
    resampled = F.resample(source, SOURCE_RATE, TARGET_RATE)
    spectrogram = T.Spectrogram(n_fft=N_FFT, hop_length=HOP, power=2.0).to(device)
    power = spectrogram(resampled)  # (channels, N_FFT // 2 + 1 bins, frames)
    spectrum = power[..., EDGE_FRAMES:-EDGE_FRAMES].double().mean(dim=(0, 2))
    peak = int(spectrum.argmax())
    bin_hz = TARGET_RATE / N_FFT
    timer = timers.cuda() if device == "cuda" else timers.host()
    expected = tone(TARGET_RATE, device)
    figures = {
        "samples": [list(source.shape), list(resampled.shape)],
        "resample_error": relative_error(resampled[:, EDGE:-EDGE], expected[:, EDGE:-EDGE]),
        "peak_hz": peak * bin_hz,
        "bin_hz": bin_hz,
        "tone_share": (spectrum[max(peak - 2, 0):peak + 3].sum() / spectrum.sum()).item(),
        "resample_ms": measure.time_calls(lambda: F.resample(source, SOURCE_RATE, TARGET_RATE), REPEATS, WARMUP, timer),
        "spectrogram_ms": measure.time_calls(lambda: spectrogram(resampled), REPEATS, WARMUP, timer),
    }
    audio_seconds = SECONDS * CHANNELS
    figures["resample_x_realtime"] = audio_seconds / (figures["resample_ms"] / 1e3)
    if device == "cuda":
        figures["name"] = torch.cuda.get_device_name(0)
    return figures, {"resample": resampled.cpu(), "spectrogram": power.cpu()}


def _judge(device: str, figures: dict) -> verdicts.Verdict:
    expected = [CHANNELS, SECONDS * TARGET_RATE]
    if figures["samples"][1] != expected:
        return verdicts.Verdict(False, f"resampling {SECONDS} s from {SOURCE_RATE} to {TARGET_RATE} Hz gave shape "
                                       f"{figures['samples'][1]}, not {expected}")
    for verdict in (verdicts.tone_resampled(figures["resample_error"], SOURCE_RATE, TARGET_RATE),
                    verdicts.tone_peak(figures["peak_hz"], TONE_HZ, figures["bin_hz"], figures["tone_share"])):
        if not verdict.ok:
            return verdict
    return verdicts.Verdict(True, f"{device}: resample {figures['resample_ms']:.1f} ms "
                                  f"({figures['resample_x_realtime']:.0f}x real time), spectrogram "
                                  f"{figures['spectrogram_ms']:.1f} ms")


def check_torchaudio(facts: dict) -> Result:
    import torch

    wanted = facts.get("torchaudio")
    if facts and not wanted:  # an image's spec that names none; outside an image ({}), whatever is installed
        return skipped(NAME, "this image carries no torchaudio (its matrix entry has no torchaudio key)")
    try:
        import torchaudio
    except ModuleNotFoundError as e:
        if e.name != "torchaudio":
            raise
        if wanted:
            return failed(NAME, f"the image records torchaudio {wanted}, and none is installed")
        return skipped(NAME, "torchaudio is not installed here")
    figures: dict = {"torchaudio": torchaudio.__version__, "tone_hz": TONE_HZ, "source_rate": SOURCE_RATE,
                     "target_rate": TARGET_RATE, "seconds": SECONDS, "channels": CHANNELS, "n_fft": N_FFT,
                     "audio": {}}
    if wanted and torchaudio.__version__.split("+")[0] != wanted:
        return failed(NAME, f"torchaudio {torchaudio.__version__} is installed but the image records {wanted}: "
                            "something replaced it after the build", **figures)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    said, results = [], {}
    # True fp32 on the GPU too (the resampler is a conv1d, which cuDNN would run in TF32 on sm_80 and newer): the
    # comparison with the CPU then speaks of the kernels, not of TF32's rounding.
    previous = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        for device in devices:
            figures["audio"][device], results[device] = run_on(device)
            verdict = _judge(device, figures["audio"][device])
            if not verdict.ok:
                return failed(NAME, f"{device}: {verdict.reason}", **figures)
            said.append(verdict.reason)
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = previous
    if "cuda" in results:
        errors = {what: relative_error(results["cuda"][what], results["cpu"][what]) for what in ("resample", "spectrogram")}
        figures["audio"]["cuda"]["vs_cpu"] = errors
        verdict = verdicts.same_on_both(errors)
        if not verdict.ok:
            return failed(NAME, verdict.reason, **figures)
        said.append(verdict.reason)
    where = "" if "cuda" in devices else " (no GPU: the CPU only)"
    return passed(NAME, f"torchaudio {torchaudio.__version__}: a {TONE_HZ} Hz tone resampled {SOURCE_RATE // 1000} -> "
                        f"{TARGET_RATE // 1000} kHz and its spectrogram as they must be{where}; " + "; ".join(said),
                  **figures)
