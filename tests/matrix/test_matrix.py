"""Validation of matrix.yaml: every refusal says what, where (file:line, tag, key) and what is right."""

import pytest

from builder.matrix.load import load
from builder.matrix.types import MatrixError


def problems(path, facts) -> list[str]:
    with pytest.raises(MatrixError) as e:
        load(path, facts)
    return [str(p) for p in e.value.problems]


def one_problem(path, facts) -> str:
    found = problems(path, facts)
    assert len(found) == 1, found
    return found[0]


def test_the_shipped_matrix_is_valid(shipped):
    assert shipped.default in shipped.specs
    assert "v2.6-cu124" in shipped.specs


def test_a_valid_entry_derives_everything_from_the_facts(write_matrix, facts):
    m = load(write_matrix("""
        default: v2.6-cu124
        images:
          v2.6-cu124: {torch: "2.6.0"}
          v2.6-cu118: {torch: "2.6"}
    """), facts)
    spec = m.specs["v2.6-cu124"]
    assert (spec.torch, spec.torchvision, spec.cuda, spec.cudnn, spec.nccl) == ("2.6.0", "0.21.0", "12.4", "9.1.0.70", "2.21.5")
    assert (spec.python, spec.min_driver, spec.index, spec.base.image) == ("3.11", "525.60.13", "pypi", "torchyard-base:bookworm")
    assert m.specs["v2.6-cu118"].index == "cu118"
    assert m.specs["v2.6-cu118"].min_driver == "450.80.02"


# Each refusal: the matrix, and what its one problem must say (where: file:line and the key; what is right).
@pytest.mark.parametrize("text, says", [
    pytest.param("""
        default: v2.6-cu124
        images:
          v2.6-cu124:
            torch: "2.6.0"
            torchvision: "0.20.1"
    """, ["matrix.yaml:5: images.v2.6-cu124.torchvision", "torchvision 0.21.0"], id="torchvision-not-matching-torch"),
    pytest.param("""
        default: v2.6-cu124
        images:
          v2.6-cu124: {torch: "2.6.0"}
          v2.6-cu121: {torch: "2.6.0"}
    """, ["images.v2.6-cu121.cuda", "cu118", "cu124", "cu126", "v2.6-cu124", "v2.5-cu121", "525.60.13"],
        id="cuda-variant-never-published"),
    pytest.param("""
        default: v2.6-cu124
        images:
          v2.6-cu124:
            torch: "2.6.0"
            cudnn: "8.9"
    """, ["matrix.yaml:5: images.v2.6-cu124.cudnn", "bundles cuDNN 9.1.0.70, not 8.9"],
        id="cudnn-the-wheel-does-not-bundle"),
    pytest.param("""
        default: v2.6-cu124
        images:
          v2.6-cu124:
            torch: "2.6.0"
            torchvison: "0.21.0"
    """, ["matrix.yaml:5: images.v2.6-cu124.torchvison", "did you mean 'torchvision'?"],
        id="unknown-key-is-a-typo-with-a-suggestion"),
    pytest.param("""
        defualt: v2.6-cu124
        default: v2.6-cu124
        images:
          v2.6-cu124: {torch: "2.6.0"}
    """, ["matrix.yaml:1: defualt", "did you mean 'default'?"], id="unknown-top-level-key"),
    pytest.param("""
        default: v2.10-cu128
        images:
          v2.10-cu128: {torch: 2.10}
    """, ["quoted strings", "2.1"], id="a-version-yaml-reads-as-a-number"),
    pytest.param("""
        default: torch26
        images:
          torch26: {torch: "2.6.0"}
    """, ["v<torch major.minor>-cu<CUDA digits>[-devel]"], id="tag-grammar"),
    pytest.param("""
        default: v2.6-cu124
        images:
          v2.6-cu124: {torch: "2.5.1"}
    """, ["tag v2.6-cu124 says torch 2.6 but the entry names 2.5.1"], id="tag-and-entry-must-agree"),
    pytest.param("""
        default: v2.5-cu124-devel
        images:
          v2.5-cu124-devel: {torch: "2.5.1"}
    """, ["images.v2.5-cu124-devel",
          "torchvision 0.20.1 (the one torch 2.5.1 pairs with) has no wheels for Python 3.13",
          "this -devel tag's compiler needs Debian trixie"],
        id="torch-2.5-has-no-cuda-12.4-devel-because-its-torchvision-skips-python-3.13"),
    pytest.param("""
        default: v2.6-cu125
        images:
          v2.6-cu124: {torch: "2.6.0"}
    """, ["'v2.6-cu125' is not a tag under images; nearest: v2.6-cu124"], id="default-must-be-a-tag"),
    pytest.param("""
        default: v2.6-cu124
        images:
          v2.6-cu124:
            torch: "2.6.0"
            size_budget: 7 gigs
    """, ["matrix.yaml:5: images.v2.6-cu124.size_budget", '"7GB"'], id="a-size-budget-that-is-no-size-names-its-line"),
    pytest.param("""
        default: v2.6-cu124
        defaults: {size_budget: lots}
        images:
          v2.6-cu124: {torch: "2.6.0"}
    """, ["matrix.yaml:2: defaults.size_budget"], id="a-size-budget-in-defaults-that-is-no-size-names-its-line"),
])
def test_a_refusal_says_where_and_what_is_right(write_matrix, facts, text, says):
    message = one_problem(write_matrix(text), facts)
    for part in says:
        assert part in message, part


def test_cudnn_prefix_of_the_bundled_one_is_accepted(write_matrix, facts):
    m = load(write_matrix("""
        default: v2.6-cu124
        images:
          v2.6-cu124: {torch: "2.6.0", cudnn: "9.1"}
    """), facts)
    assert m.specs["v2.6-cu124"].cudnn == "9.1.0.70"


@pytest.mark.parametrize("key, given, right", [
    ("torchvision", "0.21.1", "0.21.0"),  # a patch release torch 2.6.0 does not pair with
    ("torchvision", "0.21.0.1", "0.21.0"),
    ("cudnn", "9.1.1", "9.1.0.70"),  # same major.minor, another patch: a different library
    ("cudnn", "9.1.0.71", "9.1.0.70"),
])
def test_a_patch_mismatch_is_a_mismatch(write_matrix, facts, key, given, right):
    message = one_problem(write_matrix(f"""
        default: v2.6-cu124
        images:
          v2.6-cu124: {{torch: "2.6.0", {key}: "{given}"}}
    """), facts)
    assert f"images.v2.6-cu124.{key}" in message and given in message and right in message


@pytest.mark.parametrize("key, given", [("torchvision", "0.21"), ("torchvision", "0.21.0"), ("cudnn", "9"),
                                        ("cudnn", "9.1.0"), ("cudnn", "9.1.0.70")])
def test_a_prefix_or_the_whole_release_is_accepted(write_matrix, facts, key, given):
    m = load(write_matrix(f"""
        default: v2.6-cu124
        images:
          v2.6-cu124: {{torch: "2.6.0", {key}: "{given}"}}
    """), facts)
    assert (m.specs["v2.6-cu124"].torchvision, m.specs["v2.6-cu124"].cudnn) == ("0.21.0", "9.1.0.70")


def test_registry_base_pinned_by_digest_is_accepted(write_matrix, facts):
    digest = "a" * 64
    m = load(write_matrix(f"""
        default: v2.6-cu124
        images:
          v2.6-cu124: {{torch: "2.6.0", base: "docker.io/library/debian:bookworm-slim@sha256:{digest}"}}
    """), facts)
    base = m.specs["v2.6-cu124"].base
    assert (base.suite, base.is_local, base.image.endswith(digest)) == ("bookworm", False, True)


def test_cuda_12_4_devel_takes_nvcc_from_trixie_non_free(write_matrix, facts):
    spec = load(write_matrix("""
        default: v2.6-cu124-devel
        defaults: {base: bookworm}
        images:
          v2.6-cu124-devel: {torch: "2.6.0"}
    """), facts).specs["v2.6-cu124-devel"]
    assert (spec.nvcc.source, spec.nvcc.version, spec.nvcc.home) == ("debian", "12.4.131", "/usr")
    assert (spec.base.suite, spec.base.components, spec.base.image) == ("trixie", ("main", "non-free"),
                                                                        "torchyard-base:trixie-non-free")
    assert spec.python == "3.13"  # trixie's, and torch 2.6.0 and torchvision 0.21.0 publish cp313 wheels


@pytest.mark.parametrize("base, says", [
    ("bookworm", "base bookworm does not have it. Remove the base key (the trixie base is then used) or write base: trixie"),
    (f"docker.io/library/debian:trixie-slim@sha256:{'a' * 64}", "a registry base (docker.io/library/debian:trixie-slim"),
])
def test_a_debian_compiler_refuses_another_suite_or_a_registry_base(write_matrix, facts, base, says):
    message = one_problem(write_matrix(f"""
        default: v2.6-cu124
        images:
          v2.6-cu124: {{torch: "2.6.0"}}
          v2.6-cu124-devel: {{torch: "2.6.0", base: "{base}"}}
    """), facts)
    assert "images.v2.6-cu124-devel.base" in message
    assert "CUDA 12.4's nvcc comes from Debian trixie's non-free nvidia-cuda-toolkit (12.4.131)" in message
    assert says in message


def test_all_problems_are_reported_together(write_matrix, facts):
    found = problems(write_matrix("""
        default: v2.6-cu124
        images:
          v2.6-cu124: {torch: "2.6.0", cudnn: "8.9"}
          v2.6-cu121: {torch: "2.6.0"}
    """), facts)
    assert len(found) == 2


# ---------------------------------------------------------------- TAG selection


def test_no_tag_means_the_default(shipped):
    assert [s.tag for s in shipped.select(None)] == [shipped.default]
    assert [s.tag for s in shipped.select("")] == [shipped.default]


def test_all_means_every_tag(shipped):
    assert len(shipped.select("all")) == len(shipped.specs)


def test_size_budget_is_parsed_per_tag_and_from_defaults(write_matrix, facts):
    loaded = load(write_matrix("""
        default: v2.6-cu124
        defaults: {size_budget: 8GB}
        images:
          v2.6-cu124: {torch: "2.6.0", size_budget: "6.5 GB"}
          v2.5-cu124: {torch: "2.5.1"}
    """), facts)
    assert loaded.specs["v2.6-cu124"].size_budget == 6_500_000_000
    assert loaded.specs["v2.5-cu124"].size_budget == 8_000_000_000


# ---------------------------------------------------------------- strict grammars


def test_extra_packages_are_pep_508_written_in_normal_form(write_matrix, facts):
    loaded = load(write_matrix("""
        default: v2.6-cu124
        images:
          v2.6-cu124:
            torch: "2.6.0"
            extra_packages: ["einops >= 0.8", "Pillow[avif]==11.0; python_version >= '3.11'"]
    """), facts)
    assert loaded.specs["v2.6-cu124"].extra_packages == ("einops>=0.8", 'Pillow[avif]==11.0; python_version >= "3.11"')


def test_a_direct_url_needs_the_entrys_permission(write_matrix, facts):
    url = "einops @ https://files.example/einops-0.8.1-py3-none-any.whl#sha256=" + "a" * 64
    text = f"""
        default: v2.6-cu124
        images:
          v2.6-cu124: {{torch: "2.6.0", extra_packages: ["{url}"]ALLOW}}
    """
    assert "allow_direct_urls: true" in one_problem(write_matrix(text.replace("ALLOW", "")), facts)
    loaded = load(write_matrix(text.replace("ALLOW", ", allow_direct_urls: true")), facts)
    assert loaded.specs["v2.6-cu124"].extra_packages == (url,)


@pytest.mark.parametrize("base, suite", [
    ("docker.io/library/debian:bookworm-slim", "bookworm"),
    ("Registry.Example.com:5000/mirror/debian:trixie", "trixie"),
    ("localhost/debian:bookworm", "bookworm"),
    ("[::1]:5000/debian:bookworm", "bookworm"),
])
def test_registry_bases_by_dockers_grammar(write_matrix, facts, base, suite):
    ref = f"{base}@sha256:{'b' * 64}"
    loaded = load(write_matrix(f"""
        default: v2.6-cu124
        images:
          v2.6-cu124: {{torch: "2.6.0", base: "{ref}"}}
    """), facts)
    assert (loaded.specs["v2.6-cu124"].base.ref, loaded.specs["v2.6-cu124"].base.suite) == (ref, suite)


def test_a_refusal_lists_the_first_50_problems_and_counts_the_rest(write_matrix, facts):
    tags = "".join(f'\n          bad{i}: {{torch: "2.6.0"}}' for i in range(120))
    with pytest.raises(MatrixError) as e:
        load(write_matrix(f"""
        default: bad0
        images:{tags}
        """), facts)
    assert len(e.value.problems) == 120
    lines = e.value.lines()
    assert len(lines) == 51 and lines[-1] == "... and 70 more problems"
