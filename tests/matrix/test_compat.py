"""The compatibility facts hold together: every derived value the code needs is there."""

from builder import layout
from builder.image import render
from builder.matrix import compat
from builder.matrix.compat import cuda_of_variant, cudnn_number
from builder.matrix.load import load
from tests.conftest import ROOT
from tests.torch_index import without_pypi_wheel


def test_every_release_publishes_its_pypi_variant(facts):
    for release in facts.releases.values():
        assert release.pypi_variant in release.variants, release.version


def test_variant_runtime_matches_its_name(facts):
    for release in facts.releases.values():
        for v in release.variants.values():
            if v.cuda_runtime is not None:
                assert v.cuda_runtime.startswith(v.cuda + "."), (release.version, v.name, v.cuda_runtime)


def test_every_cuda_has_a_driver_floor(facts):
    for release in facts.releases.values():
        for v in release.variants.values():
            assert facts.min_driver(v.cuda), (release.version, v.name)


def test_every_debian_python_has_torch_wheels_somewhere(facts):
    for suite, python in facts.debian_python.items():
        assert any(python in r.python for r in facts.releases.values()), suite


def test_derived_numbers():
    assert cuda_of_variant("cu124") == "12.4"
    assert cuda_of_variant("cu118") == "11.8"
    assert cuda_of_variant("cu130") == "13.0"
    assert cudnn_number("9.1.0.70") == 90100
    assert cudnn_number("9.10.2.21") == 91002
    assert cudnn_number("8.9.2.26") == 8902


def test_releases_sort_as_numbers(facts):
    versions = list(facts.releases)
    assert versions.index("2.9.1") < versions.index("2.10.0")
    assert facts.release("2.6").version == "2.6.0"


def test_the_pypi_variant_is_fully_recorded(facts):
    """The PyPI wheel's pins are read from its metadata, so nothing about it may be unknown."""
    for release in facts.releases.values():
        v = release.variants[release.pypi_variant]
        assert v.cuda_runtime and v.cudnn and v.nccl, release.version


def test_the_matrix_ships_every_published_variant(facts, shipped):
    tags = {(spec.torch, spec.cuda_variant) for spec in shipped.specs.values()}
    for release in facts.releases.values():
        for name in release.variants:
            assert (release.version, name) in tags, f"v{release.minor}-{name}"


def test_a_minor_with_no_release_is_none(facts):
    assert facts.release_for_minor("2.6").version == "2.6.0"
    assert facts.release_for_minor("1.13") is None
    assert facts.release("1.13.1") is None and facts.release("1.13") is None


def test_the_cuda_compilers_are_read_from_the_facts_file(tmp_path):
    """compat.yaml's nvcc entries as typed facts (a copy of the file, so that it is read here, not from load's cache)."""
    import pytest
    import yaml

    from builder.matrix import compat

    copy = tmp_path / "compat.yaml"
    copy.write_text(compat.FACTS_FILE.read_text())
    nvcc = compat.load(copy).nvcc
    debian = nvcc["12.4"]
    assert debian == compat.Nvcc(source="debian", home="/usr", packages=(("nvidia-cuda-toolkit", "12.4.131"),),
                                 suite="trixie", component="non-free",
                                 host_driver_provides=("libcuda-12.4-1", "libcuda.so.1", "libnvidia-ml.so.1"))
    assert debian.version == "12.4.131"
    assert nvcc["13.0"] == compat.Nvcc(source="pypi", home="nvidia/cu13", packages=(
        ("nvidia-cuda-nvcc", "13.0.88"), ("nvidia-nvvm", "13.0.88"), ("nvidia-cuda-crt", "13.0.88")))
    raw = yaml.safe_load(compat.FACTS_FILE.read_text())
    raw["nvcc"]["13.0"]["source"] = "conda"
    conda = tmp_path / "conda.yaml"  # another path: load caches by path
    conda.write_text(yaml.safe_dump(raw))
    with pytest.raises(ValueError) as refused:
        compat.load(conda)
    assert str(refused.value) == "compat.yaml: nvcc source 'conda' is not one of pypi, debian"


def test_a_python_torchvision_lacks_is_named_with_both_lists(facts):
    assert facts.releases["2.5.1"].missing_wheels("3.13") == (
        "torchvision 0.20.1 (the one torch 2.5.1 pairs with) has no wheels for Python 3.13 (it has 3.9, 3.10, 3.11, "
        "3.12, torch has 3.9, 3.10, 3.11, 3.12, 3.13)")
    assert facts.releases["2.5.1"].missing_wheels("3.12") is None


def test_a_release_pypi_does_not_carry_takes_every_variant_from_the_pytorch_index(tmp_path):
    """pypi: null (a release candidate on the PyTorch wheel index alone; the loopback-index build's clone records
    2.6.0 so): every tag of the release is an index variant, its torch pinned with the local version."""
    facts_file = tmp_path / "compat.yaml"
    facts_file.write_text(without_pypi_wheel(compat.FACTS_FILE.read_text(), "2.6.0"))
    facts = compat.load(facts_file)
    assert facts.releases["2.6.0"].pypi_variant is None and facts.releases["2.5.1"].pypi_variant == "cu124"
    matrix = load(ROOT / "matrix.yaml", facts)
    assert {tag: matrix.specs[tag].index for tag in ("v2.6-cu118", "v2.6-cu124", "v2.6-cu126", "v2.5-cu124")} == {
        "v2.6-cu118": "cu118", "v2.6-cu124": "cu124", "v2.6-cu126": "cu126", "v2.5-cu124": "pypi"}
    render.write(matrix.specs["v2.6-cu124"], tmp_path)
    assert (tmp_path / "v2.6-cu124" / layout.REQUIREMENTS).read_text().startswith(
        "torch==2.6.0+cu124\ntorchvision==0.21.0+cu124\n")
