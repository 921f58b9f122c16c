"""The SBOM of an image (builder/attest/sbom.py): CycloneDX 1.6 that validates against its schema (offline: the
library ships it), every package of the manifest a component, the CUDA libraries inside their wheels."""

import json

import pytest
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator

from builder.attest import sbom
from tests.attest.conftest import BASE_ID, DEBIAN, IMAGE_ID, make_contents


VALIDATOR = JsonStrictValidator(SchemaVersion.V1_6)  # ~10 s a whole SBOM on a loaded 2-core machine: once or twice


def components(text: str) -> list[dict]:
    return json.loads(text)["components"]


def test_it_validates_against_cyclonedx_1_6(contents):
    text = sbom.make(contents)
    assert json.loads(text)["specVersion"] == "1.6"
    assert VALIDATOR.validate_str(text) is None


@pytest.mark.parametrize("breakage", [lambda c: c.pop("name"), lambda c: c.update(purl=42),
                                      lambda c: c.update(hashes=[{"alg": "SHA-256", "content": "not hex"}])],
                         ids=["no name", "a purl that is no string", "a hash that is no hex"])
def test_a_broken_sbom_would_not_validate(contents, breakage):
    """The validator is no formality (a few components, so it is quick)."""
    bom = json.loads(sbom.make(contents))
    bom["components"] = [c for c in bom["components"] if c["name"] in ("torch", "libc6")]
    bom.pop("dependencies")
    assert VALIDATOR.validate_str(json.dumps(bom)) is None
    breakage(bom["components"][0])
    assert VALIDATOR.validate_str(json.dumps(bom)) is not None


def test_every_package_of_the_manifest_is_a_component(contents):
    found = components(sbom.make(contents))
    manifest = contents.manifest
    python = sorted(c["purl"] for c in found if c.get("purl", "").startswith("pkg:pypi/"))
    assert python == sorted(f"pkg:pypi/{n}@{v}" for n, v in {**manifest.python_packages, **manifest.venv_bootstrap}.items())
    assert len(python) == len(manifest.python_packages) + 2 > 100
    debian = [c for c in found if c.get("purl", "").startswith("pkg:deb/")]
    assert sorted(c["name"] for c in debian) == sorted(DEBIAN)
    libc = next(c for c in debian if c["name"] == "libc6")
    assert libc["purl"] == "pkg:deb/debian/libc6@2.36-9%2Bdeb12u10?arch=amd64&distro=bookworm"
    assert libc["version"] == "2.36-9+deb12u10"


def test_a_locked_package_carries_its_wheels_sha256_url_and_license(contents):
    by_name = {c["name"]: c for c in components(sbom.make(contents))}
    torch = contents.python["torch"]
    assert by_name["torch"]["hashes"] == [{"alg": "SHA-256", "content": torch.sha256}]
    assert by_name["torch"]["externalReferences"] == [{"type": "distribution", "url": torch.url}]
    assert by_name["torch"]["licenses"] == [{"license": {"id": "BSD-3-Clause"}}]
    assert by_name["numpy"]["licenses"] == [{"expression": "BSD-3-Clause AND 0BSD AND MIT"}]
    assert by_name["jinja2"]["licenses"] == [{"license": {"name": "BSD License"}}]  # no SPDX id: named as declared
    assert "licenses" not in by_name["filelock"]  # its metadata declared none here
    assert "hashes" not in by_name["pip"] and "not locked" in by_name["pip"]["description"]


def test_cuda_cudnn_and_nccl_are_components_inside_their_wheels(contents):
    by_name = {c["name"]: c for c in components(sbom.make(contents))}
    spec = contents.manifest.spec
    for wheel, name, version in (("nvidia-cuda-runtime-cu12", "CUDA runtime", spec["cuda_runtime"]),
                                 ("nvidia-cudnn-cu12", "cuDNN", spec["cudnn"]), ("nvidia-nccl-cu12", "NCCL", spec["nccl"])):
        [inside] = by_name[wheel]["components"]
        assert (inside["name"], inside["version"]) == (name, version)
        assert inside["purl"] == f"pkg:generic/nvidia/{name.lower().replace(' ', '-')}@{version}"
    assert (spec["cudnn"], spec["nccl"]) == ("9.1.0.70", "2.21.5")


def test_the_image_and_its_base_are_described(contents):
    bom = json.loads(sbom.make(contents))
    image = bom["metadata"]["component"]
    assert (image["type"], image["name"], image["version"]) == ("container", "torchyard", "v2.6-cu124")
    assert {"name": "torchyard:image_id", "value": IMAGE_ID} in image["properties"]
    base = next(c for c in bom["components"] if c["bom-ref"] == "base-image")
    assert (base["type"], base["name"], base["version"]) == ("container", "bookworm", BASE_ID)
    assert bom["metadata"]["timestamp"].startswith("2025-01-01T00:00:00")  # the image's created label, not the clock


def test_the_same_image_gives_the_same_bytes_and_another_another_serial(contents):
    assert sbom.make(contents) == sbom.make(make_contents())
    other = make_contents()
    other = type(other)(**{**other.__dict__, "image_id": "sha256:" + "e" * 64})
    assert json.loads(sbom.make(other))["serialNumber"] != json.loads(sbom.make(contents))["serialNumber"]


def test_an_image_built_before_licenses_were_recorded_still_gets_its_sbom():
    text = sbom.make(make_contents(licenses={}))
    assert not any("licenses" in c for c in components(text))
