"""Writes deploy/kubernetes/modelyard.yaml: one Deployment and Service per role.

    .venv/bin/python deploy/kubernetes/render.py      # after changing a role below

Every role serves gRPC on 50051 over mTLS (the `modelyard-config` ConfigMap holds
deploy/mtls.yaml's block; the certificates come from the `modelyard-certs` Secret)
and grpc.health.v1 alone, plaintext, on 50052 (`--health-listen`), where the
kubelet's native gRPC probes go. Keys come from the `modelyard-keys` Secret. The
gateway also serves the OpenAI/Anthropic HTTP API on 8080 and scales with a
HorizontalPodAutoscaler; the registry and hot-swap keep SQLite on a volume claim
(one replica each). Redis is an external dependency (`MODELYARD_REDIS_URL`).
tests/test_kubernetes_manifests.py validates the file against the Kubernetes
schemas `kubernetes-validate` ships and checks it against this script.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

OUT = Path(__file__).resolve().parent / "modelyard.yaml"
GRPC, HEALTH, HTTP, METRICS = 50051, 50052, 8080, 9464
ROLES: dict[str, dict[str, Any]] = {
    "registry": {"state": True},
    "selector": {},
    "hotswap": {"state": True, "env": {"MODELYARD_REGISTRY": "modelyard-registry:50051"}},
    "gateway": {
        "env": {"MODELYARD_HOTSWAP": "modelyard-hotswap:50051"},
        "http": True,
        "replicas": 2,
    },
    "backend-local": {"models": True},
    "backend-openai-compat": {
        "secret_env": ["OPENAI_API_KEY", "MISTRAL_API_KEY", "OPENROUTER_API_KEY"]
    },
}
CONFIG = """model_system:
  security:
    tls:
      mode: mtls
      cert: /certs/server.pem
      key: /certs/server-key.pem
      ca: /certs/ca.pem
"""


def _labels(role: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": "modelyard", "app.kubernetes.io/component": role}


def deployment(role: str, spec: dict[str, Any]) -> dict[str, Any]:
    name = f"modelyard-{role}"
    args = ["serve", role, "--listen", f"0.0.0.0:{GRPC}", "--health-listen", f"0.0.0.0:{HEALTH}"]
    args += ["--config", "/etc/modelyard/config.yaml", "--data-dir", "/data", "--grace", "30"]
    args += ["--metrics-listen", f"0.0.0.0:{METRICS}"]  # Prometheus: GET /metrics
    if role.startswith("backend-"):
        args += ["--advertise", f"{name}:{GRPC}"]
    ports = [
        {"name": "grpc", "containerPort": GRPC},
        {"name": "health", "containerPort": HEALTH},
        {"name": "metrics", "containerPort": METRICS},
    ]
    if spec.get("http"):
        args += ["--http-listen", f"0.0.0.0:{HTTP}"]
        ports.append({"name": "http", "containerPort": HTTP})
    env = [
        {"name": "OTEL_SERVICE_NAME", "value": name},
        {
            "name": "MODELYARD_REDIS_URL",
            "valueFrom": {
                "secretKeyRef": {"name": "modelyard-redis", "key": "url", "optional": True}
            },
        },
        *(
            {"name": k, "valueFrom": {"secretKeyRef": {"name": "modelyard-keys", "key": k}}}
            for k in ("MODELYARD_ADMIN_KEY", "MODELYARD_SERVICE_KEY")
        ),
    ]
    if role != "registry":
        env.append({"name": "MODELYARD_REGISTRY", "value": f"modelyard-registry:{GRPC}"})
    env += [
        {"name": k, "value": v} for k, v in spec.get("env", {}).items() if k != "MODELYARD_REGISTRY"
    ]
    env += [
        {
            "name": k,
            "valueFrom": {
                "secretKeyRef": {"name": "modelyard-providers", "key": k, "optional": True}
            },
        }
        for k in spec.get("secret_env", [])
    ]
    mounts = [
        {"name": "config", "mountPath": "/etc/modelyard", "readOnly": True},
        {"name": "certs", "mountPath": "/certs", "readOnly": True},
        {"name": "data", "mountPath": "/data"},
    ]
    data: dict[str, Any] = (
        {"persistentVolumeClaim": {"claimName": name}} if spec.get("state") else {"emptyDir": {}}
    )
    probe = {"grpc": {"port": HEALTH}, "periodSeconds": 10, "timeoutSeconds": 2}
    container = {
        "name": role,
        "image": "modelyard:latest",
        "imagePullPolicy": "IfNotPresent",
        "args": args,
        "ports": ports,
        "env": env,
        "volumeMounts": mounts,
        "readinessProbe": {**probe, "failureThreshold": 1},
        "livenessProbe": {**probe, "failureThreshold": 3, "initialDelaySeconds": 10},
        "startupProbe": {**probe, "failureThreshold": 60},
        "resources": {"requests": {"cpu": "250m", "memory": "512Mi"}},
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": _labels(role)},
        "spec": {
            "replicas": spec.get("replicas", 1),
            # One writer for a SQLite file: the old pod goes before the new one starts.
            "strategy": {"type": "Recreate"} if spec.get("state") else {"type": "RollingUpdate"},
            "selector": {"matchLabels": _labels(role)},
            "template": {
                "metadata": {
                    "labels": _labels(role),
                    # Prometheus' Kubernetes service discovery reads these by convention.
                    "annotations": {
                        "prometheus.io/scrape": "true",
                        "prometheus.io/port": str(METRICS),
                        "prometheus.io/path": "/metrics",
                    },
                },
                "spec": {
                    "terminationGracePeriodSeconds": 40,
                    "containers": [container],
                    "volumes": [
                        {"name": "config", "configMap": {"name": "modelyard-config"}},
                        {"name": "certs", "secret": {"secretName": "modelyard-certs"}},
                        {"name": "data", **data},
                    ],
                },
            },
        },
    }


def service(role: str, spec: dict[str, Any]) -> dict[str, Any]:
    ports = [{"name": "grpc", "port": GRPC, "targetPort": "grpc", "appProtocol": "grpc"}]
    if spec.get("http"):
        ports.append({"name": "http", "port": HTTP, "targetPort": "http"})
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": f"modelyard-{role}", "labels": _labels(role)},
        "spec": {"selector": _labels(role), "ports": ports},
    }


def claim(role: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": f"modelyard-{role}", "labels": _labels(role)},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
    }


def documents() -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = [
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "modelyard-config", "labels": _labels("config")},
            "data": {"config.yaml": CONFIG},
        }
    ]
    for role, spec in ROLES.items():
        if spec.get("state"):
            docs.append(claim(role))
        docs += [deployment(role, spec), service(role, spec)]
    docs.append(
        {
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "modelyard-gateway", "labels": _labels("gateway")},
            "spec": {
                "scaleTargetRef": {
                    "apiVersion": "apps/v1",
                    "kind": "Deployment",
                    "name": "modelyard-gateway",
                },
                "minReplicas": 2,
                "maxReplicas": 10,
                "metrics": [
                    {
                        "type": "Resource",
                        "resource": {
                            "name": "cpu",
                            "target": {"type": "Utilization", "averageUtilization": 70},
                        },
                    }
                ],
            },
        }
    )
    return docs


def render() -> str:
    head = "# Generated by deploy/kubernetes/render.py: edit that, then run it.\n"
    return head + yaml.safe_dump_all(documents(), sort_keys=False, explicit_start=True)


if __name__ == "__main__":
    OUT.write_text(render())
    print(f"wrote {OUT}")
