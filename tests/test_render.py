"""Rendering: committed images/ equal a fresh render; decisions are Python's, build inputs stay out."""

import jinja2
import pytest

from builder import render


@pytest.fixture(scope="module")
def specs(shipped):
    return shipped.specs


def final_stage(dockerfile: str) -> str:
    return dockerfile[dockerfile.rindex("\nFROM "):]


def test_committed_images_match_a_fresh_render(specs):
    differ = [d for s in specs.values() for d in render.diff(s)]
    stale = [p.name for p in render.stale(list(specs))]
    assert differ == [] and stale == [], "run `make render` and commit images/"


def test_diff_names_an_edited_file(specs, tmp_path):
    spec = specs["v2.6-cu124"]
    assert render.write(spec, tmp_path) is True
    assert render.write(spec, tmp_path) is False  # nothing changed the second time
    (tmp_path / spec.tag / "Dockerfile").write_text("FROM scratch\n")
    (tmp_path / spec.tag / "extra.txt").write_text("")
    assert render.diff(spec, tmp_path) == ["v2.6-cu124/Dockerfile", "v2.6-cu124/extra.txt (not rendered)"]


def test_a_missing_variable_is_an_error_not_an_empty_string(specs):
    context = render.context(specs["v2.6-cu124"])
    del context["base_image"]
    with pytest.raises(jinja2.UndefinedError):
        render._env.get_template("Dockerfile.j2").render(context)


def test_pypi_variant_installs_plain_pins_from_the_configured_index(specs):
    files = render.render(specs["v2.6-cu124"])
    assert "nvidia-ml-py==13.615.71" in files["requirements.txt"].splitlines()  # the smoke suite reads NVML
    assert files["requirements.txt"].splitlines()[:2] == ["torch==2.6.0", "torchvision==0.21.0"]
    assert "--index-url" not in files["Dockerfile"]


def test_index_variant_pins_the_local_version_and_uses_the_wheel_index(specs):
    files = render.render(specs["v2.6-cu118"])
    assert files["requirements.txt"].splitlines()[:2] == ["torch==2.6.0+cu118", "torchvision==0.21.0+cu118"]
    assert "ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cu118" in files["Dockerfile"]
    assert '--index-url "$TORCH_INDEX_URL"' in files["Dockerfile"]


@pytest.mark.parametrize("tag", ["v2.6-cu124", "v2.6-cu118", "v2.15-cu132-devel"])
def test_build_only_inputs_stay_out_of_the_final_stage(specs, tag):
    dockerfile = render.render(specs[tag])["Dockerfile"]
    assert dockerfile.count("\nFROM ") == 3
    final = final_stage(dockerfile)
    for leak in ("build-inputs", "PIP_CONFIG_FILE", "TORCH_INDEX_URL", render.BUILD_INPUTS):
        assert leak not in final
    assert f"COPY --from=install --chown={render.UID}:{render.GID} {render.VENV} {render.VENV}" in final


def test_labels_carry_the_spec(specs):
    dockerfile = render.render(specs["v2.6-cu124"])["Dockerfile"]
    for label in ('io.torchyard.torch="2.6.0"', 'io.torchyard.cudnn="9.1.0.70"', 'io.torchyard.nccl="2.21.5"',
                  'io.torchyard.driver.min="525.60.13"', 'org.opencontainers.image.version="v2.6-cu124"'):
        assert label in dockerfile


def test_devel_adds_the_compiler_and_cuda_home(specs):
    spec = specs["v2.15-cu132-devel"]
    files = render.render(spec)
    for package in ("nvidia-cuda-nvcc", "nvidia-nvvm", "nvidia-cuda-crt"):
        assert f"{package}==13.2.86\n" in files["requirements.txt"]
    assert "build-essential" in files["Dockerfile"]
    assert "CUDA_HOME=/opt/venv/lib/python3.11/site-packages/nvidia/cu13" in files["Dockerfile"]
    assert "build-essential" not in render.render(specs["v2.15-cu132"])["Dockerfile"]


def test_every_image_carries_its_check_and_spec(specs):
    files = render.render(specs["v2.6-cu124"])
    assert files["torchyard/check_image.py"] == (render.TEMPLATES / "check_image.py").read_text()
    assert '"cudnn": "9.1.0.70"' in files["torchyard/spec.json"]
