"""Each smoke check as a pytest test: PASS passes, FAIL fails with its reason, SKIPPED skips with its reason."""

import pytest

from smoke_tests import environment
from smoke_tests.report import PASS, SKIPPED, require_gpu, timed
from smoke_tests.suite import CHECKS, Options


@pytest.fixture(scope="session")
def options(pytestconfig) -> Options:
    return Options(environment.image_facts(), require_gpu=pytestconfig.getoption("--require-gpu"))


@pytest.mark.parametrize("key", list(CHECKS))
def test_check(key, options):
    name, check = CHECKS[key]
    result = timed(name, check, options)
    if options.require_gpu:
        require_gpu(result)
    if result.status == SKIPPED:
        pytest.skip(result.reason)
    assert result.status == PASS, result.reason


def test_deit_checkpoints_load_into_torchvisions_vit_with_the_same_output(tmp_path, monkeypatch):
    """DeiT-S weights (timm key names) mapped into torchvision's VisionTransformer compute what timm computes."""
    timm = pytest.importorskip("timm", reason="timm makes the reference DeiT-S; it is not in the images")
    import torch

    from smoke_tests import finetune

    reference = timm.create_model("deit_small_patch16_224", pretrained=False).eval()
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    checkpoints = tmp_path / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    torch.save({"model": reference.state_dict()}, checkpoints / finetune.DEIT_S_CHECKPOINT)
    model, weights = finetune.deit_small(classes=10, image=224)
    assert weights.startswith("pretrained")
    model.heads = torch.nn.Identity()  # compare the features the new head would see
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        expected = reference.forward_head(reference.forward_features(x), pre_logits=True)
        torch.testing.assert_close(model.eval()(x), expected, rtol=1e-4, atol=1e-4)
