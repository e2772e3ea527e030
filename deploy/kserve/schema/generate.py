"""Writes kserve-0.21.0.json: a JSON Schema of KServe's InferenceService (serving.kserve.io/v1beta1)
and ServingRuntime (v1alpha1), from the OpenAPI models that KServe generates into its Python SDK
(the same Go types its CRDs are generated from), with the Kubernetes core types they hold
(containers, probes, resources, object metadata) taken from the Kubernetes 1.30 strict JSON schema
that kubernetes-validate ships. Every KServe object is closed (no unknown field), as a strict
validation of a CRD is; required fields are those the SDK refuses to leave empty.

    pip download --no-deps kserve==0.21.0 -d wheels/
    python deploy/kserve/schema/generate.py wheels/kserve-0.21.0-py3-none-any.whl \
        .venv/lib/python3.11/site-packages/kubernetes_validate/kubernetes-json-schema/v1.30.0-local-strict/_definitions.json

Reads the wheel as a zip file and parses its model modules with ``ast``: nothing is imported or run.
"""
from __future__ import annotations

import ast
import hashlib
import json
import re
import sys
import zipfile
from pathlib import Path

ROOTS = ("V1beta1InferenceService", "V1alpha1ServingRuntime")
SCALARS = {"str": {"type": "string"}, "int": {"type": "integer"}, "bool": {"type": "boolean"},
           "float": {"type": "number"}, "datetime": {"type": "string"}, "date": {"type": "string"}, "object": {}}
REQUIRED = re.compile(r"Invalid value for `(\w+)`, must not be `None`")


def classes_in(wheel: Path, package: str) -> dict[str, tuple[dict, dict, list]]:
    """{class name: (openapi_types, attribute_map, required python names)} of every generated model."""
    found = {}
    with zipfile.ZipFile(wheel) as archive:
        for name in archive.namelist():
            if not name.startswith(f"{package}/models/") or not name.endswith(".py"):
                continue
            source = archive.read(name).decode()
            for node in ast.parse(source).body:
                if not isinstance(node, ast.ClassDef):
                    continue
                values = {}
                for item in node.body:
                    if isinstance(item, ast.Assign) and len(item.targets) == 1 and isinstance(item.targets[0], ast.Name) \
                            and item.targets[0].id in ("openapi_types", "attribute_map"):
                        values[item.targets[0].id] = ast.literal_eval(item.value)
                if "openapi_types" in values:
                    required = sorted(set(REQUIRED.findall(ast.get_source_segment(source, node))))
                    found[node.name] = (values["openapi_types"], values["attribute_map"], required)
    return found


def schema_of(type_name: str, wanted: list[str]) -> dict:
    if type_name in SCALARS:
        return dict(SCALARS[type_name])
    if type_name.startswith("list["):
        return {"type": "array", "items": schema_of(type_name[5:-1], wanted)}
    if type_name.startswith("dict("):
        return {"type": "object", "additionalProperties": schema_of(type_name[5:-1].split(", ", 1)[1], wanted)}
    wanted.append(type_name)
    return {"$ref": f"#/$defs/{type_name}"}


def kubernetes_name(sdk_name: str, definitions: dict) -> str | None:
    """The Kubernetes schema's name of a type the SDK names its own way (V1Probe, ResourceQuantity, ...)."""
    if sdk_name == "ResourceQuantity":
        return "io.k8s.apimachinery.pkg.api.resource.Quantity"
    grouped = re.fullmatch(r"K8sIoApi([A-Z][a-z]+)(V\d+(?:(?:alpha|beta)\d+)?)(\w+)", sdk_name)
    if grouped:
        group, version, kind = grouped.groups()
        name = f"io.k8s.api.{group.lower()}.{version.lower()}.{kind}"
        return name if name in definitions else None
    core = re.fullmatch(r"V1(\w+)", sdk_name)
    if core:
        for name in (f"io.k8s.api.core.v1.{core.group(1)}", f"io.k8s.apimachinery.pkg.apis.meta.v1.{core.group(1)}"):
            if name in definitions:
                return name
    return None


def copy_definition(name: str, definitions: dict, defs: dict) -> None:
    """Copy a Kubernetes definition and every one it refers to (their $refs already say #/$defs/...)."""
    todo = [name]
    while todo:
        current = todo.pop()
        if current in defs:
            continue
        defs[current] = definitions[current]
        todo += re.findall(r'"\$ref": "#/\$defs/([^"]+)"', json.dumps(definitions[current]))


def generate(kserve_wheel: Path, kubernetes_definitions: Path) -> dict:
    models = classes_in(kserve_wheel, "kserve")
    definitions = json.loads(kubernetes_definitions.read_text())["$defs"]
    defs, wanted, missing = {}, list(ROOTS), []
    while wanted:
        name = wanted.pop()
        if name in defs or name in missing:
            continue
        if name not in models:
            k8s = kubernetes_name(name, definitions)
            if k8s is None:
                missing.append(name)
                continue
            copy_definition(k8s, definitions, defs)
            defs[name] = {"$ref": f"#/$defs/{k8s}"}
            continue
        types, attributes, required = models[name]
        properties = {attributes[attr]: schema_of(kind, wanted) for attr, kind in sorted(types.items())}
        defs[name] = {"type": "object", "properties": properties, "additionalProperties": False,
                      **({"required": [attributes[r] for r in required if r in attributes]} if required else {})}
    for name in missing:
        defs[name] = {}  # in neither source: left open, and listed in the $comment
    digest = hashlib.sha256(kserve_wheel.read_bytes()).hexdigest()
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$comment": f"Generated by deploy/kserve/schema/generate.py from the OpenAPI models of {kserve_wheel.name} "
                    f"(sha256 {digest}) and {kubernetes_definitions.parent.name}/_definitions.json of kubernetes-validate; "
                    f"open types (in neither): {sorted(missing) or 'none'}",
        "$defs": dict(sorted(defs.items())),
    }


def main(argv=None) -> int:
    argv = argv if argv is not None else sys.argv[1:]
    kserve_wheel, kubernetes_definitions = map(Path, argv)
    out = Path(__file__).with_name("kserve-0.21.0.json")
    out.write_text(json.dumps(generate(kserve_wheel, kubernetes_definitions), indent=1) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
