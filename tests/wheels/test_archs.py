"""The GPU arch list of a torch wheel: from PyTorch's TORCH_CUDA_ARCH_LIST (compat.yaml), and read from the wheel's
own fatbinary headers (builder/wheels/archs.py), on wheels made here byte by byte and on the real torch wheel when
the wheel cache holds it."""

import json
import shutil
import struct
import zipfile
from pathlib import Path

import pytest

from builder import layout
from builder.host import doctor
from builder.matrix import compat
from builder.wheels import cache, archs as wheel_archs
from tests.host.test_doctor import WITH_GPUS, host

TORCH_260_CU124 = "7979834102cd5b7a43cc64e87f2f3b14bd0e1458f06e9f88ffa386d07c7446e1"  # images/v2.6-cu124's lock


# ------------------------------------------------------------------ TORCH_CUDA_ARCH_LIST -> torch's names

def test_a_build_script_list_becomes_what_torch_reports():
    assert compat.arch_list("7.5;8.0;8.6;9.0;10.0;12.0+PTX") == (
        "sm_75", "sm_80", "sm_86", "sm_90", "sm_100", "sm_120", "compute_120")
    assert compat.arch_list("5.0;6.0;7.0;7.5;8.0;8.6;9.0") == ("sm_50", "sm_60", "sm_70", "sm_75", "sm_80", "sm_86", "sm_90")


def test_the_script_order_is_kept_and_ptx_comes_last():
    # torch 2.6.0+cu118 reports sm_50 … sm_86 sm_37 sm_90: the 11.8 case appends 3.7;9.0 to the common list
    assert compat.arch_list("5.0;6.0;7.0;7.5;8.0;8.6;3.7;9.0")[-2:] == ("sm_37", "sm_90")
    assert compat.arch_list("3.7+PTX;5.0;9.0") == ("sm_37", "sm_50", "sm_90", "compute_37")


@pytest.mark.parametrize("bad", ["", "9", "9.0;", "sm_90", "9.0+ptx", "9.0a", "9.0;$(touch x)"])
def test_a_malformed_list_is_refused_with_what_would_be_right(bad):
    with pytest.raises(ValueError, match=r"of the form <major>\.<minor> or <major>\.<minor>\+PTX"):
        compat.arch_list(bad)


def test_compat_yaml_archs_take_a_script_list_or_torchs_names(tmp_path):
    text = compat.FACTS_FILE.read_text()
    assert compat._archs(["sm_90", "sm_90a", "compute_90"], "x") == ("sm_90", "sm_90a", "compute_90")
    assert compat._archs(None, "x") is None
    with pytest.raises(ValueError, match="torch 2.6.0 cu118 archs: '9.x'"):
        bad = tmp_path / "compat.yaml"
        bad.write_text(text.replace('3.7;9.0"}  # [gbm]; archs [bcs]', '9.x"}  # [gbm]; archs [bcs]', 1))
        compat.load(bad)
    with pytest.raises(ValueError, match="expected a TORCH_CUDA_ARCH_LIST string, a list of sm_XY/compute_XY names"):
        compat._archs(["sm_90", "90"], "torch 2.6.0 cu124")


def test_every_variant_has_an_arch_list_from_a_source(facts):
    unknown = {(r.version, v.name) for r in facts.releases.values() for v in r.variants.values() if v.archs is None}
    # the last three filled from the 2.5 and 2.7 cycles' build scripts and the 2.7 wheel's own list ([cyc], [whl])
    assert unknown == set()
    assert facts.releases["2.5.1"].variants["cu121"].archs == ("sm_50", "sm_60", "sm_70", "sm_75", "sm_80", "sm_86",
                                                              "sm_90")


# ------------------------------------------------------------------ the wheel's fatbinary headers

def fatbinary(entries: list[tuple[int, int, bytes]]) -> bytes:
    """A fatbinary: its header, then per (kind, arch, payload) an entry header (64 bytes, arch at 28) and payload."""
    body = b""
    for kind, arch, payload in entries:
        header = struct.pack("<HHIQ", kind, 0x0101, 64, len(payload)) + bytes(12) + struct.pack("<I", arch)
        body += header + bytes(64 - len(header)) + payload
    return struct.pack("<IHHQ", wheel_archs.FATBIN_MAGIC, 1, 16, len(body)) + body


def elf(sections: dict[str, bytes]) -> bytes:
    """A 64-bit little-endian ELF file holding these sections, the names and the section table last (as ld
    writes them)."""
    names = b"\0" + b"".join(n.encode() + b"\0" for n in [*sections, ".shstrtab"])
    data, headers, at = b"", [bytes(64)], 64
    for name, content in [*sections.items(), (".shstrtab", names)]:
        headers.append(struct.pack("<IIQQQQIIQQ", names.index(name.encode() + b"\0"), 1, 0, 0, at + len(data),
                                   len(content), 0, 0, 8, 0))
        data += content
    shoff = 64 + len(data)
    header = b"\x7fELF" + bytes([2, 1, 1]) + bytes(9) + struct.pack("<HHIQQQIHHHHHH", 3, 62, 1, 0, 0, shoff, 0, 64, 0, 0,
                                                                     64, len(headers), len(headers) - 1)
    return header + data + b"".join(headers)


def wheel(path: Path, library: bytes | None) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("torch/__init__.py", "")
        if library is not None:
            z.writestr(wheel_archs.LIBRARY, library)
    return path


def test_cubin_and_ptx_archs_are_read_from_the_headers(tmp_path):
    fatbin = (fatbinary([(2, 80, b"\x01" * 40), (2, 90, b"\x02" * 24), (1, 90, b".version 8.4")]) + bytes(8)  # padding
              + fatbinary([(2, 80, b"\x03" * 8), (2, 90, b"")]))
    library = elf({".text": b"\x90" * 100, ".nv_fatbin": fatbin, ".data": b"\0" * 16})
    assert wheel_archs.read(wheel(tmp_path / "t.whl", library)) == ("sm_80", "sm_90", "compute_90")


@pytest.mark.parametrize("library, says", [
    (None, "has no torch/lib/libtorch_cuda.so: not a CUDA build of torch"),
    (b"MZ" + bytes(100), "is not a 64-bit little-endian ELF file"),
    (elf({".text": b"\x90" * 8}), "has no .nv_fatbin section"),
    (elf({".nv_fatbin": bytes(64)}), ".nv_fatbin holds no fatbinary"),
    (elf({".nv_fatbin": fatbinary([(7, 80, b"")])}), "is not one this reader knows"),
    (elf({".nv_fatbin": fatbinary([(2, 80, b"x" * 64)])[:-32]}), "claims more than the section holds"),
    (elf({".text": b""})[:100], "ends inside"),
])
def test_a_wheel_that_is_not_what_it_claims_is_refused(tmp_path, library, says):
    with pytest.raises(wheel_archs.WheelArchsError, match=says):
        wheel_archs.read(wheel(tmp_path / "t.whl", library))


def test_a_file_that_is_not_a_zip_is_refused(tmp_path):
    (tmp_path / "t.whl").write_bytes(b"not a zip")
    with pytest.raises(wheel_archs.WheelArchsError, match="t.whl"):
        wheel_archs.read(tmp_path / "t.whl")


@pytest.mark.skipif(not (cache.folder() / TORCH_260_CU124).is_file(), reason="the wheel cache holds no torch 2.6.0 cu124 wheel")
def test_the_real_torch_2_6_wheel_has_the_archs_its_build_recorded(facts):
    """torch-2.6.0-cp311-manylinux1_x86_64.whl (PyPI, CUDA 12.4), 767 MB: its libtorch_cuda.so's fatbinaries hold
    sm_50 … sm_90 cubins and no PTX, the list compat.yaml records ([arch], checked at build time in the image)."""
    assert wheel_archs.read(cache.folder() / TORCH_260_CU124) == facts.releases["2.6.0"].variants["cu124"].archs


# ------------------------------------------------------------------ recorded with the lock, preferred by the doctor

@pytest.fixture
def images(tmp_path):
    """images/v2.6-cu124 as committed (its lock names TORCH_260_CU124), and a cache holding a wheel under that
    sha256 whose kernels are sm_80 only."""
    target = tmp_path / "images"
    shutil.copytree(layout.IMAGES / "v2.6-cu124", target / "v2.6-cu124", ignore=shutil.ignore_patterns(layout.ARCHS_FILE))
    store = tmp_path / "cache"
    store.mkdir()
    wheel(store / TORCH_260_CU124, elf({".nv_fatbin": fatbinary([(2, 80, b"")])}))
    return target, store


def test_fetch_records_the_wheels_list_and_the_doctor_prefers_it(images, shipped):
    target, store = images
    spec = shipped.specs["v2.6-cu124"]
    h100 = host("h100-driver-535")
    assert doctor.judge(spec, h100, WITH_GPUS, target).verdict == doctor.RUNS  # compat.yaml: sm_50 … sm_90
    assert wheel_archs.record("v2.6-cu124", store, target) == ("sm_80",)
    record = json.loads((target / "v2.6-cu124" / layout.ARCHS_FILE).read_text())
    assert record["wheel_sha256"] == TORCH_260_CU124 and record["torch"] == "2.6.0"
    judged = doctor.judge(spec, h100, WITH_GPUS, target)
    assert (judged.verdict, judged.why) == (doctor.DOES_NOT_RUN, "sm_90 not in sm_80")


def test_a_record_of_another_wheel_or_a_malformed_one_is_not_used(images):
    target, store = images
    assert wheel_archs.recorded("v2.6-cu124", target) is None
    wheel_archs.record("v2.6-cu124", store, target)
    path = target / "v2.6-cu124" / layout.ARCHS_FILE
    data = json.loads(path.read_text())
    for bad in ({**data, "wheel_sha256": "0" * 64}, {**data, "archs": ["sm_80; rm -rf /"]}, {**data, "archs": []}, [1]):
        path.write_text(json.dumps(bad))
        assert wheel_archs.recorded("v2.6-cu124", target) is None
    path.write_text("{not json")
    assert wheel_archs.recorded("v2.6-cu124", target) is None


def test_nothing_is_recorded_for_a_tag_without_a_lock_or_without_its_wheel(images, tmp_path):
    target, store = images
    assert wheel_archs.record("v2.6-cu126", store, target) is None  # no lock
    assert wheel_archs.record("v2.6-cu124", tmp_path / "empty", target) is None  # the wheel is not in the cache
    assert not (target / "v2.6-cu124" / layout.ARCHS_FILE).exists()


def test_the_committed_record_is_of_the_locked_wheel():
    """images/v2.6-cu124/archs.json was written by `make fetch` from the real wheel, and matches compat.yaml."""
    assert wheel_archs.recorded("v2.6-cu124") == compat.load().releases["2.6.0"].variants["cu124"].archs
