"""Every refusal of matrix.yaml, whole: the file and line, the tag and key, what is wrong and what would be right.

Each case is one mistake a person makes; the expected lines are what `make validate` prints for it (after the
folder of the file). Comparing them whole guards the line numbers and the advice as well as the refusal.
"""

import dataclasses

import pytest

from builder.matrix.load import load
from builder.matrix.types import Base, ImageSpec, MatrixError, Problem, Sibling

REFUSALS = [
    pytest.param('- v2.6-cu124\n',
                 ['matrix.yaml: expected a mapping with keys: default, defaults, images'], id='not_a_mapping'),
    pytest.param('default: v2.6-cu124\n',
                 ['matrix.yaml:1: images: needs at least one tag, e.g. \'v2.6-cu124: {torch: "2.6.0"}\''], id='no_images'),
    pytest.param('default: v2.6-cu124\nimages: {}\n',
                 ['matrix.yaml:2: images: needs at least one tag, e.g. \'v2.6-cu124: {torch: "2.6.0"}\''], id='empty_images'),
    pytest.param('default: v2.6-cu124\nimages:\n  - v2.6-cu124\n',
                 ['matrix.yaml:2: images: needs at least one tag, e.g. \'v2.6-cu124: {torch: "2.6.0"}\''], id='images_a_list'),
    pytest.param('default: v2.6-cu124\ndefaults: {bas: bookworm, size_budget: 7GB}\nimages:\n  v2.6-cu124: {torch: "2.6.0"}\n',
                 ["matrix.yaml:2: defaults.bas: unknown key 'bas'; did you mean 'base'?"], id='unknown_defaults_key'),
    pytest.param('default: v2.6-cu124\ndefaults:\n  registry: x\nimages:\n  v2.6-cu124: {torch: "2.6.0"}\n',
                 ["matrix.yaml:3: defaults.registry: unknown key 'registry'; allowed keys: base, size_budget"], id='unknown_defaults_key_far'),
    pytest.param('default: v2.6-cu124\ndefaults:\n  size_budget: lots\nimages:\n  v2.6-cu124: {torch: "2.6.0"}\n',
                 ['matrix.yaml:3: defaults.size_budget: \'lots\' is not a size; write it like "7GB", "6.5GB" or "800MB"'], id='bad_default_budget'),
    pytest.param('images:\n  v2.6-cu124: {torch: "2.6.0"}\n',
                 ["matrix.yaml:1: default: name the tag that plain `make build` uses, e.g. 'default: v2.6-cu124'"], id='no_default'),
    pytest.param('default: zzz\nimages:\n  v2.6-cu124: {torch: "2.6.0"}\n',
                 ["matrix.yaml:1: default: 'zzz' is not a tag under images"], id='default_far'),
    pytest.param('default: v2.6-cu124\nimages:\n  v2.6-cu124: "2.6.0"\n',
                 ['matrix.yaml:3: images.v2.6-cu124: expected a mapping, e.g. {torch: "2.6.0"}'], id='entry_not_mapping'),
    pytest.param('default: v2.6-cu124\nimages:\n  v2.6-cu124: {torch: "2.6.0", zzzz: 1}\n',
                 ["matrix.yaml:3: images.v2.6-cu124.zzzz: unknown key 'zzzz'; allowed keys: torch, cuda, python, torchvision, torchaudio, cudnn, base, extra_packages, allow_direct_urls, size_budget"], id='unknown_entry_key_no_hint'),
    pytest.param('default: v2.6-cu124\nimages:\n  v2.6-cu124: {python: "3.11"}\n',
                 ['matrix.yaml:3: images.v2.6-cu124: names no torch version; add e.g. torch: "2.6"'], id='no_torch'),
    pytest.param('default: v2.6-cu124\nimages:\n  v2.6-cu124: {torch: 2.6}\n',
                 ['matrix.yaml:3: images.v2.6-cu124.torch: write versions as quoted strings (torch: "2.6"): YAML reads 2.6 as the number 2.6'], id='torch_number'),
    pytest.param('default: v2.6-cu124\nimages:\n  v2.6-cu124: {torch: "2.6.9"}\n',
                 ["matrix.yaml:3: images.v2.6-cu124.torch: unknown torch version '2.6.9'; known releases: 2.4.1, 2.5.1, 2.6.0, 2.7.1, 2.8.0, 2.9.1, 2.10.0, 2.11.0, 2.12.1, 2.13.0, 2.14.1, 2.15.0"], id='unknown_torch'),
    pytest.param('default: v2.6-cu124\nimages:\n  v2.6-cu124: {torch: "2.6.0", cuda: cu126}\n',
                 ["matrix.yaml:3: images.v2.6-cu124.cuda: tag v2.6-cu124 says cu124 but the entry names 'cu126'; the tag and cuda must agree"], id='cuda_key_disagrees'),
    pytest.param('default: v2.6-cu124\nimages:\n  v2.6-cu124: {torch: "2.6.0", torchvision: 0.21}\n',
                 ['matrix.yaml:3: images.v2.6-cu124.torchvision: write versions as quoted strings (torchvision: "0.21"): YAML reads 0.21 as the number 0.21'], id='tv_number'),
    pytest.param('default: v2.6-cu124\nimages:\n  v2.6-cu124: {torch: "2.6.0", python: "3.12"}\n',
                 ['matrix.yaml:3: images.v2.6-cu124.python: base bookworm ships Python 3.11, not 3.12; pick the base whose Python you want (bookworm -> 3.11, trixie -> 3.13)'], id='python_wrong'),
    pytest.param('default: v2.4-cu121\nimages:\n  v2.4-cu121: {torch: "2.4.1", base: trixie}\n',
                 ['matrix.yaml:3: images.v2.4-cu121.base: torch 2.4.1 has no wheels for Python 3.13 (it has 3.8, 3.9, 3.10, 3.11, 3.12); choose a base whose Python is among them'], id='python_no_wheels_trixie'),
    pytest.param('default: v2.6-cu124\nimages:\n  v2.6-cu124: {torch: "2.6.0", extra_packages: "einops"}\n',
                 ['matrix.yaml:3: images.v2.6-cu124.extra_packages: expected a list of requirement strings, e.g. ["einops==0.8.1"], not \'einops\''], id='extra_bad'),
    pytest.param('default: v2.6-cu124\nimages:\n  v2.6-cu124: {torch: "2.6.0", extra_packages: ["  "]}\n',
                 ['matrix.yaml:3: images.v2.6-cu124.extra_packages: \'  \' is not a requirement string; e.g. ["einops==0.8.1"]'], id='extra_blank'),
    pytest.param('default: v2.6-cu124\nimages:\n  v2.6-cu124: {torch: "2.6.0", size_budget: huge}\n',
                 ['matrix.yaml:3: images.v2.6-cu124.size_budget: \'huge\' is not a size; write it like "7GB", "6.5GB" or "800MB"'], id='budget_bad'),
    pytest.param('default: v2.6-cu124\nimages:\n  v2.6-cu124: {torch: "2.6.0", base: 12}\n',
                 ['matrix.yaml:3: images.v2.6-cu124.base: expected a Debian suite (bookworm, trixie) or a registry image as name:tag@sha256:<64 hex digits>, e.g. docker.io/library/debian:bookworm-slim@sha256:…, not 12'], id='base_number'),
    pytest.param('default: v2.6-cu124\nimages:\n  v2.6-cu124: {torch: "2.6.0", base: bullseye}\n',
                 ["matrix.yaml:3: images.v2.6-cu124.base: unknown Debian suite 'bullseye'; known: bookworm, trixie"], id='base_unknown_suite'),
    pytest.param('default: v2.6-cu124\nimages:\n  v2.6-cu124: {torch: "2.6.0", base: "docker.io/library/ubuntu:24.04@sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"}\n',
                 ["matrix.yaml:3: images.v2.6-cu124.base: cannot tell the Debian suite of 'docker.io/library/ubuntu:24.04@sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb'; use an image whose tag names it (e.g. debian:bookworm-slim@sha256:…)"], id='base_no_suite'),
    pytest.param('default: v2.6-cu124\nimages:\n  v2.6-cu124: {torch: "2.6.0", base: "example/bookworm-trixie:x@sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"}\n',
                 ["matrix.yaml:3: images.v2.6-cu124.base: cannot tell the Debian suite of 'example/bookworm-trixie:x@sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb'; use an image whose tag names it (e.g. debian:bookworm-slim@sha256:…)"], id='base_two_suites'),
    pytest.param('default: v2.6-cu124\ndefaults: {base: bullseye}\nimages:\n  v2.6-cu124: {torch: "2.6.0"}\n',
                 ["matrix.yaml:2: defaults.base: unknown Debian suite 'bullseye'; known: bookworm, trixie"], id='default_base_bad'),
    pytest.param('default: v2.10-cu126\nimages:\n  v2.10-cu126: {torch: "2.10.0", cudnn: "9.5"}\n',
                 ['matrix.yaml:3: images.v2.10-cu126.cudnn: the cuDNN that torch 2.10.0+cu126 bundles is not recorded in builder/matrix/compat.yaml; remove the cudnn key or add the fact with its source'], id='cudnn_unrecorded'),
    pytest.param('default: v2.4-cu121\nimages:\n  v2.4-cu121: {torch: "2.4.1", base: trixie, python: "3.13"}\n',
                 ['matrix.yaml:3: images.v2.4-cu121.python: torch 2.4.1 has no wheels for Python 3.13 (it has 3.8, 3.9, 3.10, 3.11, 3.12); choose a base whose Python is among them'], id='python_given_no_wheels'),
    pytest.param('default: v2.6-cu124\nimages:\n  v2.6-cu124: {torch: "2.6.0", [a, b]: 1}\n',
                 ['matrix.yaml:3:32: malformed YAML: a key must be a string; this one is a list or a mapping'], id='key_a_list'),
    pytest.param('default: v2.6-cu124\nimages:\n  v2.6-cu124: {torch: "2.6.0", ' + '1' * 70 + ': 1}\n',
                 [f"matrix.yaml:3:32: malformed YAML: a key must be a string; YAML reads '{'1' * 60}' as a int: quote it "
                  f'("{"1" * 60}")'], id='key_a_long_number_shown_to_60'),
    pytest.param('default: v2.6-cu124\nimages:\n  v2.6-cu124: {torch: "2.6.0", python: "3.\uff11\uff12"}\n',
                 ["matrix.yaml:3: images.v2.6-cu124.python: base bookworm ships Python 3.11, not '3.\uff11\uff12'; pick the "
                  "base whose Python you want (bookworm -> 3.11, trixie -> 3.13)"], id='python_not_ascii_digits_quoted'),
]


@pytest.mark.parametrize("text, expected", REFUSALS)
def test_each_mistake_is_refused_with_where_and_what_would_be_right(tmp_path, facts, text, expected):
    path = tmp_path / "matrix.yaml"
    path.write_text(text)
    with pytest.raises(MatrixError) as refused:
        load(path, facts)
    found = [str(problem).replace(f"{tmp_path}/", "") for problem in refused.value.problems]
    assert found == expected
    assert str(refused.value) == "\n".join(str(problem) for problem in refused.value.problems)


def test_an_unreadable_matrix_says_so(tmp_path, facts):
    with pytest.raises(MatrixError) as refused:
        load(tmp_path / "missing.yaml", facts)
    assert [str(p) for p in refused.value.problems] == [
        f"{tmp_path}/missing.yaml: cannot read the matrix: No such file or directory"]


def test_malformed_yaml_names_line_and_column(tmp_path, facts):
    path = tmp_path / "matrix.yaml"
    path.write_text('default: v2.6-cu124\nimages:\n  v2.6-cu124: {torch: "2.6.0"\n  v2.6-cu118: {torch: "2.6.0"}\n')
    with pytest.raises(MatrixError) as refused:
        load(path, facts)
    assert [str(p) for p in refused.value.problems] == [
        f"{path}:4:3: malformed YAML: did not find expected ',' or '}}'"]


def test_problems_of_several_tags_come_in_file_order(tmp_path, facts):
    path = tmp_path / "matrix.yaml"
    path.write_text('default: v2.6-cu124\nimages:\n  v2.6-cu124: {torch: "2.6.0", cudnn: "8.9"}\n'
                    '  v2.6-cu125: {torch: "2.6.0"}\n  v2.5-cu124: {torch: "2.5.1", bse: trixie}\n')
    with pytest.raises(MatrixError) as refused:
        load(path, facts)
    lines = [str(p).replace(f"{tmp_path}/", "") for p in refused.value.problems]
    assert [line.split(": ")[0] + ": " + line.split(": ")[1] for line in lines] == [
        "matrix.yaml:3: images.v2.6-cu124.cudnn", "matrix.yaml:4: images.v2.6-cu125.cuda",
        "matrix.yaml:5: images.v2.5-cu124.bse"]


def test_a_tag_the_matrix_lacks_is_refused_with_the_way_to_it(shipped, facts):
    with pytest.raises(MatrixError) as refused:
        shipped.select("v2.6-cu121", facts)
    assert [str(p) for p in refused.value.problems] == [
        "TAG: 'v2.6-cu121' is not a tag in matrix.yaml. PyTorch 2.6 was never published for CUDA 12.1 (cu121); its "
        "CUDA variants are cu118, cu124, cu126. A host whose driver supports CUDA 12.1 runs v2.6-cu124 through CUDA "
        "minor-version compatibility (any CUDA 12.x image runs on a driver >= 525.60.13). For a true CUDA 12.1 build "
        "use v2.5-cu121."]
    with pytest.raises(MatrixError) as refused:
        shipped.select("v2.6-cu12")
    assert str(refused.value) == ("TAG: 'v2.6-cu12' is not a tag in matrix.yaml; nearest: v2.6-cu126, v2.6-cu124, "
                                  "v2.9-cu128 (all tags: `make list`)")
    with pytest.raises(MatrixError) as refused:
        shipped.select("zzz")
    assert str(refused.value) == "TAG: 'zzz' is not a tag in matrix.yaml (all tags: `make list`)"


def load_refusal(tmp_path, facts, text) -> str:
    path = tmp_path / "matrix.yaml"
    path.write_text(text)
    with pytest.raises(MatrixError) as refused:
        load(path, facts)
    return str(refused.value).replace(f"{tmp_path}/", "")


def test_an_unpublished_cuda_names_what_runs_it_and_where_it_was_published(tmp_path, facts):
    # CUDA 11.7: no torch here had it; cu118 runs it by minor-version compatibility, and no true build exists.
    assert load_refusal(tmp_path, facts, 'default: v2.6-cu117\nimages:\n  v2.6-cu117: {torch: "2.6.0"}\n') == (
        "matrix.yaml:3: images.v2.6-cu117.cuda: PyTorch 2.6 was never published for CUDA 11.7 (cu117); its CUDA "
        "variants are cu118, cu124, cu126. A host whose driver supports CUDA 11.7 runs v2.6-cu118 through CUDA "
        "minor-version compatibility (any CUDA 11.x image runs on a driver >= 450.80.02).")
    # CUDA 12.8: newer than 2.6's 12.x variants, so none runs it; the newest torch built for it is named.
    assert load_refusal(tmp_path, facts, 'default: v2.6-cu128\nimages:\n  v2.6-cu128: {torch: "2.6.0"}\n') == (
        "matrix.yaml:3: images.v2.6-cu128.cuda: PyTorch 2.6 was never published for CUDA 12.8 (cu128); its CUDA "
        "variants are cu118, cu124, cu126. For a true CUDA 12.8 build use v2.11-cu128.")


def test_a_tag_beyond_a_small_matrix_says_what_to_add(tmp_path, facts):
    path = tmp_path / "matrix.yaml"
    path.write_text('default: v2.6-cu118\nimages:\n  v2.6-cu118: {torch: "2.6.0"}\n  v2.4-cu121: {torch: "2.4.1"}\n')
    small = load(path, facts)
    with pytest.raises(MatrixError) as refused:
        small.select("v2.6-cu121", facts)
    assert str(refused.value) == (
        "TAG: 'v2.6-cu121' is not a tag in matrix.yaml. PyTorch 2.6 was never published for CUDA 12.1 (cu121); its "
        "CUDA variants are cu118, cu124, cu126. A host whose driver supports CUDA 12.1 runs v2.6-cu124 (add it to "
        "matrix.yaml) through CUDA minor-version compatibility (any CUDA 12.x image runs on a driver >= 525.60.13). "
        "For a true CUDA 12.1 build use v2.4-cu121.")
    assert [s.tag for s in small.select(None)] == ["v2.6-cu118"] and len(small.select("all")) == 2


def test_a_valid_entry_becomes_exactly_its_spec(tmp_path, facts):
    """Every field, from the entry and the facts: a devel tag with its compiler, a plain one without."""
    path = tmp_path / "matrix.yaml"
    path.write_text('default: v2.6-cu124\nimages:\n  v2.6-cu124:\n    torch: "2.6.0"\n    extra_packages: ["einops==0.8.1"]\n'
                    '  v2.15-cu132-devel: {torch: "2.15.0"}\n')
    specs = load(path, facts).specs
    assert specs["v2.6-cu124"] == ImageSpec(
        tag="v2.6-cu124", torch="2.6.0", torchvision="0.21.0", cuda_variant="cu124", cuda="12.4",
        cuda_runtime="12.4.127", cudnn="9.1.0.70", nccl="2.21.5",
        archs=("sm_50", "sm_60", "sm_70", "sm_75", "sm_80", "sm_86", "sm_90"), python="3.11", min_driver="525.60.13",
        toolkit_driver="550.54.14", base=Base("bookworm", "bookworm"), devel=False, nvcc=None, index="pypi",
        extra_packages=("einops==0.8.1",), size_budget=None,
        siblings=(Sibling("v2.6-cu124", "12.4", "525.60.13", ("sm_50", "sm_60", "sm_70", "sm_75", "sm_80", "sm_86", "sm_90")),
                  Sibling("v2.15-cu132-devel", "13.2", "580.65.06", ("sm_75", "sm_80", "sm_86", "sm_90", "sm_100", "sm_120"))))
    devel = specs["v2.15-cu132-devel"]
    assert (devel.devel, devel.nvcc, devel.cuda_runtime, devel.toolkit_driver) == (
        True, facts.nvcc["13.2"], "13.2.86", facts.toolkit_driver.get("13.2"))


def test_the_facts_given_are_the_facts_used(tmp_path, facts):
    path = tmp_path / "matrix.yaml"
    path.write_text('default: v2.6-cu124\nimages:\n  v2.6-cu124: {torch: "2.6.0"}\n')
    other = dataclasses.replace(facts, debian_python={"bookworm": "3.12", "trixie": "3.13"})
    assert load(path, other).specs["v2.6-cu124"].python == "3.12"


def test_block_style_keys_are_refused_at_their_own_line(tmp_path, facts):
    text = ('images:\n  v2.6-cu124:\n    python: 3.11\n    cudnn: 9.1\n    torch: "2.5.1"\n'
            '  v2.15-cu132-devel:\n    torch: "2.15.0"\n    base: "debian:bookworm"\n'
            'defaults:\n  base: bookworm\n  size_budget: lots\n  registry: x\nextra: 1\ndefault: zzz\n')
    assert load_refusal(tmp_path, facts, text).splitlines() == [
        "matrix.yaml:13: extra: unknown key 'extra'; allowed keys: default, defaults, images",
        "matrix.yaml:12: defaults.registry: unknown key 'registry'; allowed keys: base, size_budget",
        "matrix.yaml:11: defaults.size_budget: 'lots' is not a size; write it like \"7GB\", \"6.5GB\" or \"800MB\"",
        "matrix.yaml:5: images.v2.6-cu124.torch: tag v2.6-cu124 says torch 2.6 but the entry names 2.5.1; the tag and "
        "torch must agree",
        "matrix.yaml:8: images.v2.15-cu132-devel.base: registry base 'debian:bookworm' is not pinned; write it as "
        "name:tag@sha256:<64 hex digits>, e.g. docker.io/library/debian:bookworm-slim@sha256:… (a floating tag is not reproducible)",
        "matrix.yaml:14: default: 'zzz' is not a tag under images",
    ]
    assert load_refusal(tmp_path, facts, 'default: v2.6-cu124\nimages:\n  v2.6-cu124:\n    torch: "2.6.0"\n'
                                         '    python: 3.11\n    cudnn: 9.1\n').splitlines() == [
        "matrix.yaml:6: images.v2.6-cu124.cudnn: write versions as quoted strings (cudnn: \"9.1\"): YAML reads 9.1 as "
        "the number 9.1",
        "matrix.yaml:5: images.v2.6-cu124.python: write versions as quoted strings (python: \"3.11\"): YAML reads 3.11 "
        "as the number 3.11",
    ]


def test_a_base_with_a_slash_is_a_registry_reference_that_must_be_pinned(tmp_path, facts):
    assert load_refusal(tmp_path, facts, 'default: v2.6-cu124\nimages:\n  v2.6-cu124: {torch: "2.6.0", base: "registry.example/debian"}\n') == (
        "matrix.yaml:3: images.v2.6-cu124.base: registry base 'registry.example/debian' is not pinned; write it as "
        "name:tag@sha256:<64 hex digits>, e.g. docker.io/library/debian:bookworm-slim@sha256:… (a floating tag is not reproducible)")


@pytest.mark.parametrize("base", ["debian@sha256:abc", "bookworm@latest"])
def test_a_base_with_an_at_but_no_digest_is_not_a_reference(tmp_path, facts, base):
    assert load_refusal(tmp_path, facts, f'default: v2.6-cu124\nimages:\n  v2.6-cu124: {{torch: "2.6.0", base: "{base}"}}\n') == (
        f"matrix.yaml:3: images.v2.6-cu124.base: '{base}' is not an image reference by Docker's grammar "
        "([registry/]path[:tag]@digest, lowercase path, nothing else); write it as name:tag@sha256:<64 hex digits>, e.g. docker.io/library/debian:bookworm-slim@sha256:…")


def test_a_base_with_credentials_is_refused_without_echoing_them(tmp_path, facts):
    ref = "u:s3cret@reg.example/debian:bookworm@sha256:" + "a" * 64
    message = load_refusal(tmp_path, facts, f'default: v2.6-cu124\nimages:\n  v2.6-cu124: {{torch: "2.6.0", base: "{ref}"}}\n')
    assert message == ("matrix.yaml:3: images.v2.6-cu124.base: holds credentials (a user and password before an '@'); leave them out: "
                       "a base is pulled with the Docker config's credentials (`docker login <registry>`)")


def test_the_suite_is_read_from_the_name_not_the_digest(tmp_path, facts):
    digest = "bookworm".encode().hex().ljust(64, "0")  # hex cannot spell a suite, but the check must not look there
    ref = f"example/debian:trixie-slim@sha256:{digest}"
    path = tmp_path / "matrix.yaml"
    path.write_text(f'default: v2.15-cu132\nimages:\n  v2.15-cu132: {{torch: "2.15.0", base: "{ref}"}}\n')
    assert load(path, facts).specs["v2.15-cu132"].base == Base(ref, "trixie")


def test_a_devel_tag_without_a_known_compiler_names_the_ones_there_are(tmp_path, facts):
    assert load_refusal(tmp_path, facts, 'default: v2.6-cu126-devel\nimages:\n  v2.6-cu126-devel: {torch: "2.6.0"}\n') == (
        "matrix.yaml:3: images.v2.6-cu126-devel: -devel needs a CUDA 12.6 compiler, and builder/matrix/compat.yaml knows no "
        "source of one: no PyPI wheel carries nvcc 12.6 and no Debian suite packages it (known: CUDA 12.4 (debian), "
        "CUDA 13.0 (pypi), CUDA 13.2 (pypi)); drop -devel, or use a CUDA variant with a known compiler")


def test_several_problems_read_as_one_line_each(tmp_path, facts):
    message = load_refusal(tmp_path, facts, 'default: v2.6-cu124\nimages:\n  v2.6-cu124: {torch: "2.6.0", a: 1, b: 2}\n')
    assert message.count("\n") == 1 and message.splitlines()[1].startswith("matrix.yaml:3: images.v2.6-cu124.b:")


def test_the_true_build_is_the_matrixs_newest_torch_for_that_cuda(tmp_path, facts):
    path = tmp_path / "matrix.yaml"
    path.write_text('default: v2.9-cu128\nimages:\n  v2.9-cu128: {torch: "2.9.1"}\n  v2.10-cu128: {torch: "2.10.0"}\n')
    with pytest.raises(MatrixError) as refused:
        load(path, facts).select("v2.6-cu128", facts)
    assert str(refused.value).endswith("For a true CUDA 12.8 build use v2.10-cu128.")  # 2.10 > 2.9, as numbers


def test_nearest_tags_are_the_three_closest(tmp_path, facts):
    path = tmp_path / "matrix.yaml"
    path.write_text("default: v2.6-cu124\nimages:\n" + "".join(
        f'  v2.6-cu{v}: {{torch: "2.6.0"}}\n' for v in (118, 124, 126)) + '  v2.5-cu124: {torch: "2.5.1"}\n')
    with pytest.raises(MatrixError) as refused:
        load(path, facts).select("v2.6-cu12", facts)
    assert str(refused.value) == ("TAG: 'v2.6-cu12' is not a tag in matrix.yaml; nearest: v2.6-cu126, v2.6-cu124, "
                                  "v2.6-cu118 (all tags: `make list`)")
    assert load_refusal(tmp_path, facts, 'default: v2.6-cu12\nimages:\n' + "".join(
        f'  v2.6-cu{v}: {{torch: "2.6.0"}}\n' for v in (118, 124, 126)) + '  v2.5-cu124: {torch: "2.5.1"}\n') == (
        "matrix.yaml:1: default: 'v2.6-cu12' is not a tag under images; nearest: v2.6-cu126, v2.6-cu124, v2.6-cu118")


def test_a_near_miss_as_far_as_half_alike_is_still_named(tmp_path, facts, shipped):
    """'v2.6' is 0.57 alike to 'v2.6-cu124' (difflib): close enough to suggest."""
    assert load_refusal(tmp_path, facts, 'default: v2.6\nimages:\n  v2.6-cu124: {torch: "2.6.0"}\n') == (
        "matrix.yaml:1: default: 'v2.6' is not a tag under images; nearest: v2.6-cu124")
    path = tmp_path / "matrix.yaml"
    path.write_text('default: v2.6-cu124\nimages:\n  v2.6-cu124: {torch: "2.6.0"}\n  v2.5-cu118: {torch: "2.5.1"}\n')
    with pytest.raises(MatrixError) as refused:
        load(path, facts).select("v2.6", facts)
    assert str(refused.value) == "TAG: 'v2.6' is not a tag in matrix.yaml; nearest: v2.6-cu124 (all tags: `make list`)"


def test_only_devel_tags_carry_a_compiler(tmp_path, facts):
    path = tmp_path / "matrix.yaml"
    path.write_text('default: v2.15-cu132\nimages:\n  v2.15-cu132: {torch: "2.15.0"}\n  v2.15-cu132-devel: {torch: "2.15.0"}\n')
    specs = load(path, facts).specs  # loaded here, not from a fixture: the test runs the validation itself
    assert specs["v2.15-cu132"].nvcc is None and specs["v2.15-cu132-devel"].nvcc == facts.nvcc["13.2"]


@pytest.mark.parametrize("key", ["torch", "python", "torchvision", "cudnn"])
def test_a_version_key_without_a_value_is_refused_not_read_as_unset(write_matrix, facts, key):
    """`torch:` with nothing after it once dropped the tag from the matrix without a word (exit 0)."""
    body = '{torch: "2.6.0", %s: }' % key if key != "torch" else "{torch: }"
    path = write_matrix(f"default: v2.6-cu124\nimages:\n  v2.6-cu124: {{torch: \"2.6.0\"}}\n  v2.6-cu118: {body}\n")
    with pytest.raises(MatrixError) as refused:
        load(path, facts)
    (problem,) = refused.value.problems
    assert problem.where == f"{path}:4: images.v2.6-cu118.{key}"
    assert problem.message.startswith("has no value (YAML reads an empty value as null); write a version, e.g.")


def test_a_refused_defaults_base_is_one_problem_at_its_own_line(write_matrix, facts):
    """Not one per entry that takes it, each under images.<tag>.base, a key none of them holds."""
    path = write_matrix('default: v2.6-cu124\ndefaults: {base: "bookworm; rm -rf /"}\nimages:\n  v2.6-cu124: {torch: "2.6.0"}\n'
                        '  v2.6-cu118: {torch: "2.6.0"}\n  v2.6-cu126: {torch: "2.6.0", base: trixie}\n')
    with pytest.raises(MatrixError) as refused:
        load(path, facts)
    (problem,) = refused.value.problems
    assert problem.where == f"{path}:2: defaults.base"
    assert "is not an image reference by Docker's grammar" in problem.message


@pytest.mark.parametrize("count, last", [(50, None), (51, "... and 1 more problem"), (52, "... and 2 more problems")])
def test_a_refusal_counts_the_problems_past_the_first_50(count, last):
    lines = MatrixError([Problem(f"matrix.yaml:{n}", "wrong") for n in range(count)]).lines()
    assert lines[:50] == [f"matrix.yaml:{n}: wrong" for n in range(50)]
    assert lines[50:] == ([last] if last else [])
