"""`make k8s`: manifests that pass the Kubernetes schemas (offline, kubernetes-validate, strict: no unknown field)
and say what the issue asks: GPUs as limits, /dev/shm as `make smoke` sizes it, the image by digest, the suite's
exit status as the Job's, and for several nodes an indexed Job whose pod 0 is the rendezvous by a stable name."""

import re
import subprocess
import sys

import kubernetes_validate
import pytest
import yaml

from builder.host import gpu, smoke
from builder.jobs import cluster, k8s
from tests.conftest import ROOT
from tests.jobs.test_cluster import DIGEST, run_script

# The oldest and newest Kubernetes releases whose schemas kubernetes-validate ships.
K8S_VERSIONS = ("1.25.0", kubernetes_validate.latest_version())
IMAGE = cluster.Image("registry.example.com/ml/torchyard:v2.6-cu124", DIGEST)


def documents(gpus: int, nodes: int, image: cluster.Image = IMAGE) -> list[dict]:
    # through the text a user pipes into kubectl, not the Python objects
    return list(yaml.safe_load_all(k8s.dump(k8s.manifests("v2.6-cu124", image, gpus, nodes), "header")))


def by_kind(docs: list[dict]) -> dict[str, dict]:
    return {d["kind"]: d for d in docs}


def k8s_expand(text: str, env: dict[str, str]) -> str:
    """What the kubelet does to a container's args: $(VAR) from the env, $$ a literal $."""
    return re.sub(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)", lambda m: "$" if m[0] == "$$" else env.get(m[1], m[0]), text)


@pytest.mark.parametrize("gpus, nodes", [(1, 1), (8, 1), (8, 2), (4, 16)])
@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_every_manifest_passes_the_kubernetes_schema(gpus, nodes, version):
    docs = documents(gpus, nodes)
    assert [d["kind"] for d in docs] == (["Job"] if nodes == 1 else ["Service", "Job"])
    for doc in docs:
        kubernetes_validate.validate(doc, version, strict=True)


def test_the_schema_check_is_strict():
    job = by_kind(documents(1, 1))["Job"]
    job["spec"]["template"]["spec"]["containers"][0]["gpus"] = 1  # not a field: a typo must not pass
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(job, K8S_VERSIONS[-1], strict=True)


def test_one_node_runs_the_suite_on_its_gpus_and_its_exit_is_the_jobs():
    job = by_kind(documents(8, 1))["Job"]
    pod = job["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert container["image"] == f"registry.example.com/ml/torchyard:v2.6-cu124@{DIGEST}"
    assert container["resources"] == {"limits": {"nvidia.com/gpu": 8}}  # limits: what the device plugin reads
    # the suite's exit is the pod's (no shell, no `|| true`); a skipped GPU check fails; the JSON is the last line
    assert container["args"] == [cluster.PYTHON, "-m", "smoke_tests", "--require-gpu", "--json", "-"]
    assert "command" not in container  # the image's entrypoint (tini, the unprivileged user) stays
    assert pod["restartPolicy"] == "Never" and job["spec"]["backoffLimit"] == 0  # a failure is not retried away
    assert job["spec"]["activeDeadlineSeconds"] == smoke.TIMEOUT_S


def test_shm_is_memory_backed_and_sized_as_make_smoke_sizes_it():
    pod = by_kind(documents(1, 1))["Job"]["spec"]["template"]["spec"]
    [volume] = [v for v in pod["volumes"] if v["name"] == "dshm"]
    assert volume["emptyDir"]["medium"] == "Memory"
    size = volume["emptyDir"]["sizeLimit"]
    docker_bytes = int(gpu.SHM_SIZE[:-1]) * 2**30 if gpu.SHM_SIZE.endswith("g") else None  # Docker's g is GiB
    assert size.endswith("Gi") and int(size[:-2]) * 2**30 == docker_bytes
    assert {"name": "dshm", "mountPath": "/dev/shm"} in pod["containers"][0]["volumeMounts"]


def test_runs_unprivileged():
    pod = by_kind(documents(1, 1))["Job"]["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] and pod["securityContext"]["runAsUser"] == k8s.USER_ID != 0
    container = pod["containers"][0]["securityContext"]
    assert container == {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}


def test_an_unpinned_image_is_written_by_tag():
    job = by_kind(documents(1, 1, cluster.Image("127.0.0.1:5000/torchyard:v2.6-cu124", None)))["Job"]
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "127.0.0.1:5000/torchyard:v2.6-cu124"
    assert container["imagePullPolicy"] == "Always"  # a tag may have moved since a node pulled it
    pinned = by_kind(documents(1, 1))["Job"]["spec"]["template"]["spec"]["containers"][0]
    assert pinned["imagePullPolicy"] == "IfNotPresent"


def test_two_nodes_meet_on_pod_0_through_the_headless_service():
    docs = by_kind(documents(8, 2))
    service, job = docs["Service"], docs["Job"]
    name = job["metadata"]["name"]
    spec, pod = job["spec"], job["spec"]["template"]["spec"]
    assert (spec["completionMode"], spec["completions"], spec["parallelism"]) == ("Indexed", 2, 2)
    assert service["spec"]["clusterIP"] == "None" and service["metadata"]["name"] == pod["subdomain"] == name
    labels = job["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()  # the service finds the job's pods
    container = pod["containers"][0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 8
    shell, flag, script = container["args"]
    assert (shell, flag) == ("/bin/sh", "-c")
    # Every $ is escaped from the kubelet's $(VAR) expansion; the shell sees the script torchrun's line is.
    assert "$" not in script.replace("$$", "")
    for index, is_host in (("0", "1"), ("1", "0")):
        argv = run_script(k8s_expand(script, {"JOB_COMPLETION_INDEX": "bogus"}), JOB_COMPLETION_INDEX=index)
        # an indexed pod's host name is <job>-<index>; with subdomain=<service> it resolves as <job>-0.<service>
        assert f"--rdzv-endpoint={name}-0.{service['metadata']['name']}:{cluster.RENDEZVOUS_PORT}" in argv
        assert f"--rdzv-id={name}" in argv and "--nnodes=2" in argv and "--nproc-per-node=8" in argv
        assert f"--rdzv-conf=is_host={is_host},join_timeout=900,read_timeout=900" in argv
        assert argv[-5:] == ["-m", cluster.ALLREDUCE_MODULE, "--require-gpu", "--json", "-"]


def make_k8s(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["make", "-s", "k8s", *args], cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_make_k8s_prints_only_yaml_on_stdout():
    done = make_k8s("TAG=v2.6-cu124", "GPUS=8", "NODES=2", "REGISTRY=127.0.0.1:5000/ml")
    assert done.returncode == 0, done.stderr
    docs = list(yaml.safe_load_all(done.stdout))
    assert [d["kind"] for d in docs] == ["Service", "Job"]
    assert "NOT pinned" in done.stdout.split("apiVersion")[0]  # said in the header comment, since none is recorded


@pytest.mark.parametrize("args, says", [
    (["GPUS=0"], "GPUS='0': give the GPUs per node as a whole number from 1 to 16"),
    (["GPUS=17"], "from 1 to 16"),
    (["NODES=two"], "NODES='two': give the number of nodes as a whole number from 1 to 512"),
    (["REGISTRY=https://r.example.com"], "is not host[:port][/namespace]"),
    (["TAG=v2.6-cu121"], "not a tag in matrix.yaml"),
])
def test_bad_requests_are_refused_with_nothing_on_stdout(args, says):
    done = make_k8s(*args, *([] if any(a.startswith("REGISTRY=") for a in args) else ["REGISTRY=r.example.com"]))
    assert done.returncode == 2 and done.stdout == "", done.stdout
    assert says in done.stderr


def test_python_entry_point_matches_make():
    done = subprocess.run([sys.executable, "-m", "builder", "k8s", "--registry", "127.0.0.1:5000/ml"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout == make_k8s("REGISTRY=127.0.0.1:5000/ml").stdout
