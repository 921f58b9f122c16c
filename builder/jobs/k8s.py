"""`make -s k8s TAG=… [GPUS=n] [NODES=m]`: the smoke test as Kubernetes manifests on stdout (`| kubectl apply -f -`).

One node: a Job whose one Pod runs the whole suite on the GPUs it asked for; the Pod's exit status is the
suite's (every check PASS or SKIPPED-free under --require-gpu), so the Job succeeds exactly when the suite does,
and the last line of its log is the report as JSON. Several nodes: an Indexed Job (one Pod per node) and a
headless Service that gives Pod 0 a stable DNS name, on which torchrun's c10d rendezvous meets.

Manifests are Python data written with yaml.safe_dump; every value in them comes from the validated matrix,
a bounded count, or a registry reference checked by its grammar.
"""

from __future__ import annotations

import yaml

from builder.host import gpu, smoke
from builder.jobs.cluster import RENDEZVOUS_PORT, Image, Torchrun, job_name, suite_command

GPU_RESOURCE = "nvidia.com/gpu"  # the NVIDIA device plugin's resource: requested as a limit, as it requires
USER_ID = 1000  # the image's torchyard user (builder/image/render.py): the entrypoint runs the command as it is
KEEP_FINISHED_S = 24 * 3600  # a finished Job (and its log) stays a day, then Kubernetes removes it
# K8s expands $(VAR) in a container's command and args; $$ is a literal $.
_K8S_DOLLAR = "$$"


def labels(tag: str, name: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": "torchyard", "app.kubernetes.io/component": "smoke",
            "app.kubernetes.io/instance": name, "app.kubernetes.io/version": tag}


def _pod_spec(image: Image, args: list[str], gpus: int) -> dict:
    return {
        "restartPolicy": "Never",
        # The image's entrypoint runs the command as the unprivileged user when started as it (no root phase).
        "securityContext": {"runAsNonRoot": True, "runAsUser": USER_ID, "runAsGroup": USER_ID,
                            "seccompProfile": {"type": "RuntimeDefault"}},
        # GPU nodes are often tainted so that only pods asking for GPUs land there.
        "tolerations": [{"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}],
        "containers": [{
            "name": "smoke",
            "image": image.pinned,
            # by digest the node's copy can only be the same image; by tag it may be an older push
            "imagePullPolicy": "IfNotPresent" if image.digest else "Always",
            "args": args,  # args, not command: the image's entrypoint (tini, then the user) stays
            "resources": {"limits": {GPU_RESOURCE: gpus}},
            "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
            "volumeMounts": [{"name": "dshm", "mountPath": "/dev/shm"}],
        }],
        # /dev/shm as `make smoke` sizes it (a container runtime's default is 64 MB). Memory-backed: pages used
        # count against the pod's memory, nothing is reserved.
        "volumes": [{"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": f"{gpu.SHM_GIB}Gi"}}],
    }


def _job(name: str, tag: str, pod: dict, **spec) -> dict:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "labels": labels(tag, name)},
        "spec": {
            **spec,
            "backoffLimit": 0,  # a failed smoke test is the answer, not a flake to retry
            "activeDeadlineSeconds": smoke.TIMEOUT_S,  # a hung run fails instead of holding GPUs
            "ttlSecondsAfterFinished": KEEP_FINISHED_S,
            "template": {"metadata": {"labels": labels(tag, name)}, "spec": pod},
        },
    }


def manifests(tag: str, image: Image, gpus: int, nodes: int) -> list[dict]:
    name = job_name(tag, nodes)
    if nodes == 1:
        return [_job(name, tag, _pod_spec(image, suite_command(), gpus))]
    # Indexed Pods are named <job>-<index> and, with subdomain=<service>, resolve as <job>-<index>.<service>.
    run = Torchrun(nodes=nodes, gpus=gpus, endpoint=f"{name}-0.{name}:{RENDEZVOUS_PORT}", rendezvous_id=name)
    script = run.script("JOB_COMPLETION_INDEX").replace("$", _K8S_DOLLAR)
    pod = {**_pod_spec(image, ["/bin/sh", "-c", script], gpus), "subdomain": name}
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "labels": labels(tag, name)},
        "spec": {
            "clusterIP": "None",  # headless: DNS names for the Pods, no load balancing
            "publishNotReadyAddresses": True,  # the name must resolve before any readiness
            "selector": {"app.kubernetes.io/instance": name},
            "ports": [{"name": "rendezvous", "port": RENDEZVOUS_PORT, "targetPort": RENDEZVOUS_PORT}],
        },
    }
    job = _job(name, tag, pod, completionMode="Indexed", completions=nodes, parallelism=nodes)
    return [service, job]


def dump(documents: list[dict], header: str) -> str:
    body = "---\n".join(yaml.safe_dump(d, sort_keys=False, default_flow_style=False) for d in documents)
    return "".join(f"# {line}\n" for line in header.splitlines()) + body
