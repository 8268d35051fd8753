#!/usr/bin/env python3
"""Derives the JSON schemas the tests validate envoy/istio/*.yaml against, from Istio's published CRDs.

    derive.py CRD_YAML ISTIO_VERSION

CRD_YAML is manifests/charts/base/files/crd-all.gen.yaml of the Istio release ISTIO_VERSION. For each custom
resource the manifests use, the openAPIV3Schema of the served version is taken as it is, then:
  - descriptions are dropped (only the structure is needed), and CEL rules (x-kubernetes-validations), which a
    JSON Schema validator cannot run;
  - an object that lists its properties and does not preserve unknown fields gets additionalProperties: false,
    as the API server's strict field validation (kubectl's default) rejects unknown fields;
  - nullable: true becomes a "null" type, x-kubernetes-int-or-string an integer-or-string type;
  - apiVersion and kind are pinned to the resource's, metadata needs a name, and status is left out;
  - for brevity, spec properties the manifests do not use and that repeat a schema kept elsewhere are left out
    (DestinationRule's subsets and per-port traffic policies): using one makes validation fail, never pass.
Written to istio-ISTIO_VERSION/<kind>.json beside this script (needs PyYAML).
"""
import json
import os
import sys

import yaml

RESOURCES = [
    ("extensions.istio.io", "v1alpha1", "WasmPlugin"),
    ("networking.istio.io", "v1", "ServiceEntry"),
    ("networking.istio.io", "v1", "DestinationRule"),
    ("security.istio.io", "v1", "RequestAuthentication"),
]
# Spec properties left out, as paths of property names.
LEFT_OUT = {
    "DestinationRule": [("subsets",), ("trafficPolicy", "portLevelSettings")],
}
DROPPED = {"description", "x-kubernetes-validations", "x-kubernetes-list-type", "x-kubernetes-list-map-keys",
           "x-kubernetes-map-type"}


def strict(node):
    if isinstance(node, list):
        return [strict(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: strict(value) for key, value in node.items() if key not in DROPPED}
    preserve = out.pop("x-kubernetes-preserve-unknown-fields", False)
    if out.pop("x-kubernetes-int-or-string", False):
        out.pop("type", None)
        out["type"] = ["integer", "string"]
    if out.pop("nullable", False) and isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
    if "properties" in out and not preserve and "additionalProperties" not in out:
        out["additionalProperties"] = False
    return out


def main(crd_path, istio_version):
    with open(crd_path, encoding="utf-8") as file:
        crds = [doc for doc in yaml.safe_load_all(file) if doc and doc.get("kind") == "CustomResourceDefinition"]
    out_dir = os.path.join(os.path.dirname(os.path.abspath(__file__)), f"istio-{istio_version}")
    os.makedirs(out_dir, exist_ok=True)
    for group, version, kind in RESOURCES:
        crd = next(c for c in crds if c["spec"]["group"] == group and c["spec"]["names"]["kind"] == kind)
        served = next(v for v in crd["spec"]["versions"] if v["name"] == version and v.get("served"))
        spec = strict(served["schema"]["openAPIV3Schema"]["properties"]["spec"])
        for path in LEFT_OUT.get(kind, []):
            node = spec
            for name in path[:-1]:
                node = node["properties"][name]
            del node["properties"][path[-1]]
        schema = {
            "$schema": "http://json-schema.org/draft-07/schema#",
            "title": f"{kind} {group}/{version}, Istio {istio_version}",
            "type": "object",
            "required": ["apiVersion", "kind", "metadata", "spec"],
            "additionalProperties": False,
            "properties": {
                "apiVersion": {"const": f"{group}/{version}"},
                "kind": {"const": kind},
                "metadata": {"type": "object", "required": ["name"],
                             "properties": {"name": {"type": "string"}, "namespace": {"type": "string"}}},
                "spec": spec,
            },
        }
        with open(os.path.join(out_dir, f"{kind}.json"), "w", encoding="utf-8") as file:
            json.dump(schema, file, indent=1, sort_keys=True)
            file.write("\n")


if __name__ == "__main__":
    main(*sys.argv[1:])
