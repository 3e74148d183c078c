"""Offline schema validation of rendered objects, from published Go modules.

* Kubernetes kinds: the OpenAPI v2 document ``api/openapi-spec/swagger.json`` inside the Go module
  ``k8s.io/kubernetes`` (same version as the control-plane tier, ``hack/controlplane/versions.env``; the
  module is shared through GOMODCACHE). Made *strict* the way kubernetes-json-schema's ``-strict``
  flavour is: objects with ``properties`` reject unknown fields, as ``kubectl apply
  --validate=strict`` / the API server's strict field validation do.
* prometheus-operator kinds: ``openAPIV3Schema`` of the CRDs in
  ``github.com/prometheus-operator/prometheus-operator`` (``example/prometheus-operator-crd/``), also
  strict, ``metadata`` checked against Kubernetes' ObjectMeta.

The modules are fetched with ``go mod download -json`` (module proxy only). Without Go the calling test
is skipped locally and fails under ``CI=true``.
"""

from __future__ import annotations

import copy
import functools
import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped,unused-ignore]  # no stubs in the test extra
import yaml

from tests.tooling import require_tool

REPO = Path(__file__).resolve().parents[2]
DEFAULT_KUBERNETES_VERSION = "v1.34.4"
PROMETHEUS_OPERATOR_VERSION = "v0.85.0"
PROMETHEUS_OPERATOR_CRDS = {
    "ServiceMonitor": "monitoring.coreos.com_servicemonitors.yaml",
    "PodMonitor": "monitoring.coreos.com_podmonitors.yaml",
    "PrometheusRule": "monitoring.coreos.com_prometheusrules.yaml",
}

Schema = dict[str, Any]


def kubernetes_version() -> str:
    """The control-plane tier's pinned Kubernetes version, so both tiers agree (and share the module)."""
    env = REPO / "hack" / "controlplane" / "versions.env"
    if env.exists():
        for line in env.read_text().splitlines():
            if line.startswith("KUBERNETES_VERSION="):
                return line.split("=", 1)[1].strip()
    return DEFAULT_KUBERNETES_VERSION


def go_module_dir(module: str, version: str) -> Path:
    """Directory of ``module@version`` in GOMODCACHE, downloading it through the module proxy if needed."""
    go = shutil.which("go") or ("/usr/local/go/bin/go" if Path("/usr/local/go/bin/go").exists() else None)
    if go is None:
        go = require_tool("go")
    proc = subprocess.run(
        [go, "mod", "download", "-json", f"{module}@{version}"],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
        cwd="/",
    )
    if proc.returncode != 0:
        raise AssertionError(f"go mod download {module}@{version} failed:\n{proc.stdout}\n{proc.stderr}")
    info = json.loads(proc.stdout)
    if "Error" in info:
        raise AssertionError(f"go mod download {module}@{version}: {info['Error']}")
    return Path(info["Dir"])


def _walk(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)


def _strict(node: dict[str, Any]) -> None:
    """Reject unknown fields wherever an object schema lists its properties and says nothing else."""
    if (
        "properties" in node
        and "additionalProperties" not in node
        and not node.get("x-kubernetes-preserve-unknown-fields")
    ):
        node["additionalProperties"] = False


class KubernetesSchemas:
    """Validators for built-in kinds from Kubernetes' own OpenAPI v2 document."""

    def __init__(self, swagger: dict[str, Any], source: str) -> None:
        self.source = source
        definitions: dict[str, Schema] = copy.deepcopy(swagger["definitions"])
        for node in _walk(definitions):
            _strict(node)
        # Types with custom JSON encodings that the document only describes as strings.
        definitions["io.k8s.apimachinery.pkg.util.intstr.IntOrString"] = {
            "oneOf": [{"type": "integer"}, {"type": "string"}]
        }
        definitions["io.k8s.apimachinery.pkg.api.resource.Quantity"] = {
            "oneOf": [{"type": "string"}, {"type": "number"}]
        }
        self.definitions = definitions
        self.by_gvk: dict[tuple[str, str, str], str] = {}
        for name, schema in swagger["definitions"].items():
            for gvk in schema.get("x-kubernetes-group-version-kind", []):
                self.by_gvk[(gvk["group"], gvk["version"], gvk["kind"])] = name

    def definition_for(self, api_version: str, kind: str) -> str | None:
        group, _, version = api_version.rpartition("/")
        return self.by_gvk.get((group, version, kind))

    def validator(self, definition: str) -> jsonschema.Draft4Validator:
        return jsonschema.Draft4Validator(
            {"$ref": f"#/definitions/{definition}", "definitions": self.definitions}
        )

    def errors(self, obj: dict[str, Any]) -> list[str] | None:
        """Validation errors of ``obj``, or None when its kind is not a built-in one."""
        definition = self.definition_for(str(obj.get("apiVersion", "")), str(obj.get("kind", "")))
        if definition is None:
            return None
        return _messages(self.validator(definition), obj)


class CrdSchemas:
    """Validators for custom kinds from their CRDs' ``openAPIV3Schema`` (the served ``v1`` version)."""

    def __init__(self, crds: dict[str, dict[str, Any]], kubernetes: KubernetesSchemas) -> None:
        self.schemas: dict[tuple[str, str], Schema] = {}
        object_meta = {"$ref": "#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"}
        for crd in crds.values():
            group = crd["spec"]["group"]
            kind = crd["spec"]["names"]["kind"]
            for version in crd["spec"]["versions"]:
                schema = copy.deepcopy(version["schema"]["openAPIV3Schema"])
                for node in _walk(schema):
                    _strict(node)
                    pattern = node.get("pattern")
                    if isinstance(pattern, str) and "(?i)" in pattern:
                        # RE2 allows inline flags anywhere; Python only at the start.
                        node["pattern"] = "(?i)" + pattern.replace("(?i)", "")
                schema["properties"]["metadata"] = object_meta
                schema["definitions"] = kubernetes.definitions
                self.schemas[(f"{group}/{version['name']}", kind)] = schema

    def errors(self, obj: dict[str, Any]) -> list[str] | None:
        schema = self.schemas.get((str(obj.get("apiVersion", "")), str(obj.get("kind", ""))))
        if schema is None:
            return None
        return _messages(jsonschema.Draft7Validator(schema), obj)


def _messages(validator: jsonschema.protocols.Validator, obj: dict[str, Any]) -> list[str]:
    return sorted(
        f"{'/'.join(map(str, error.absolute_path)) or '<root>'}: {error.message}"
        for error in validator.iter_errors(obj)
    )


@functools.cache
def kubernetes_schemas() -> KubernetesSchemas:
    version = kubernetes_version()
    swagger_path = go_module_dir("k8s.io/kubernetes", version) / "api" / "openapi-spec" / "swagger.json"
    swagger = json.loads(swagger_path.read_text())
    return KubernetesSchemas(swagger, f"k8s.io/kubernetes@{version}")


@functools.cache
def crd_schemas() -> CrdSchemas:
    root = go_module_dir("github.com/prometheus-operator/prometheus-operator", PROMETHEUS_OPERATOR_VERSION)
    crds = {
        kind: yaml.safe_load((root / "example" / "prometheus-operator-crd" / name).read_text())
        for kind, name in PROMETHEUS_OPERATOR_CRDS.items()
    }
    return CrdSchemas(crds, kubernetes_schemas())


def validation_errors(obj: dict[str, Any]) -> list[str]:
    """Errors of one rendered object against its kind's schema; an unknown kind is itself an error."""
    for schemas in (kubernetes_schemas(), crd_schemas()):
        errors = schemas.errors(obj)
        if errors is not None:
            return errors
    return [f"no schema for {obj.get('apiVersion')} {obj.get('kind')}"]


def object_meta_pattern_ok(name: str) -> bool:
    """DNS-1123 subdomain, as object names must be."""
    return len(name) <= 253 and re.fullmatch(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?", name) is not None
