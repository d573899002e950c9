"""deploy/kubernetes/modelyard.yaml: valid against the Kubernetes schemas that
`kubernetes-validate` ships (no network), in step with its generator, and wired
the way modelyard needs: every role once, native gRPC probes on the plaintext
health port, a Service per Deployment, the gateway autoscaled."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from modelyard.assembly import ROLES
from modelyard.assembly.settings import resolve_settings
from modelyard.config import parse_config

ROOT = Path(__file__).resolve().parent.parent
MANIFEST = ROOT / "deploy" / "kubernetes" / "modelyard.yaml"
KUBERNETES = "1.33.0"


def _docs() -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(MANIFEST.read_text()) if d]


def _of(kind: str) -> list[dict[str, Any]]:
    return [d for d in _docs() if d["kind"] == kind]


def test_every_document_is_valid_for_kubernetes_strictly() -> None:
    for doc in _docs():
        kubernetes_validate.validate(doc, KUBERNETES, strict=True)


def test_a_misspelt_field_is_refused_by_the_same_check() -> None:
    deployment = _of("Deployment")[0]
    deployment["spec"]["replicaz"] = 1
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES, strict=True)


def test_the_file_is_what_its_generator_writes() -> None:
    spec = importlib.util.spec_from_file_location("render", MANIFEST.parent / "render.py")
    assert spec is not None and spec.loader is not None
    render = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(render)
    assert MANIFEST.read_text() == render.render(), "run deploy/kubernetes/render.py"


def test_roles_probes_services_and_the_autoscaler() -> None:
    deployments = {d["metadata"]["name"]: d for d in _of("Deployment")}
    services = {s["metadata"]["name"]: s for s in _of("Service")}
    served = []
    for name, deployment in deployments.items():
        [container] = deployment["spec"]["template"]["spec"]["containers"]
        args = container["args"]
        assert args[0] == "serve"
        roles = [a for a in args[1:] if a in ROLES]
        served += roles
        # The arguments are ones the CLI takes, and resolve to settings.
        flags = dict(zip(args[2::2], args[3::2], strict=False))
        health = flags["--health-listen"]
        assert resolve_settings({"listen": flags["--listen"], "health_listen": health}, env={})
        for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
            assert container[probe]["grpc"]["port"] == int(health.rsplit(":", 1)[1]), name
        # A Service selects exactly this Deployment's pods, on its gRPC port.
        selector = services[name]["spec"]["selector"]
        assert selector == deployment["spec"]["template"]["metadata"]["labels"]
        assert services[name]["spec"]["ports"][0]["port"] == 50051
    assert sorted(served) == sorted(
        r for r in ROLES if r not in ("backend-coreml", "backend-plugins")
    )
    [hpa] = _of("HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"]["name"] == "modelyard-gateway"
    assert (
        "--http-listen"
        in deployments["modelyard-gateway"]["spec"]["template"]["spec"]["containers"][0]["args"]
    )


def test_the_config_map_is_a_valid_modelyard_configuration() -> None:
    [config_map] = _of("ConfigMap")
    config = parse_config(config_map["data"]["config.yaml"], env={})
    assert config.security.tls.mode == "mtls"
