#!/usr/bin/env python3
"""k8s_schemas.py: writes the JSON schemas kubeconform validates the manifests
of deploy/k8s against, offline, from two specs the Go module proxy serves:

  - Kubernetes' own OpenAPI v2 spec (api/openapi-spec/swagger.json in the
    k8s.io/kubernetes module zip): one schema per kind of every group/version;
  - CustomResourceDefinition YAML files (KEDA's config/crd/bases/*.yaml in the
    github.com/kedacore/keda/v2 module zip): one schema per served version.

Each schema is standalone (the definitions it reaches are copied into it, so
kubeconform resolves nothing over the network) and strict: an object that
lists its properties gets "additionalProperties": false, so a misspelt field
fails like a wrong type does (what kubeconform's own openapi2jsonschema.py
does with --strict). Int-or-string and quantity fields take a string or a
number. Descriptions are dropped to keep the files small.

Files are named the way kubeconform's schema-location template
'{{ .ResourceKind }}{{ .KindSuffix }}.json' asks for them:
deployment-apps-v1.json, configmap-v1.json, scaledobject-keda-v1alpha1.json.

A ScaledObject's trigger metadata is a free string map in KEDA's CRD, so a
misspelt trigger parameter would pass: --scaler TYPE=GLOB also writes
_keda-trigger-TYPE.json, the parameters that scaler reads, from the
`keda:"name=...,order=...,optional|default=...,enum=..."` tags of its Go
source in the KEDA module (those read from triggerMetadata; one read from the
target's environment too may be given as <name>FromEnv).

usage: k8s_schemas.py OUTDIR --swagger-zip ZIP [--crd-zip ZIP --crd-glob GLOB]...
                     [--scaler TYPE=GLOB]... (members of --crd-zip)
       (a plain file instead of a zip: --swagger FILE, --crd FILE)
"""
import argparse
import copy
import fnmatch
import json
import os
import re
import sys
import zipfile

import yaml  # PyYAML (Debian python3-yaml)

DEF_PREFIX = "#/definitions/"
NUMERIC_STRINGS = {
    "io.k8s.apimachinery.pkg.util.intstr.IntOrString",
    "io.k8s.apimachinery.pkg.api.resource.Quantity",
}


def strip(node):
    """Removes descriptions, adds strictness, widens int-or-string, in place."""
    if isinstance(node, list):
        for item in node:
            strip(item)
        return
    if not isinstance(node, dict):
        return
    node.pop("description", None)
    if node.get("format") == "int-or-string" or node.get("x-kubernetes-int-or-string"):
        for k in ("type", "format", "x-kubernetes-int-or-string", "anyOf"):
            node.pop(k, None)
        node["oneOf"] = [{"type": "string"}, {"type": "integer"}]
    if "properties" in node and "additionalProperties" not in node \
            and not node.get("x-kubernetes-preserve-unknown-fields"):
        node["additionalProperties"] = False
    for key, value in list(node.items()):
        if key == "properties":
            for prop in value.values():
                strip(prop)
        elif isinstance(value, (dict, list)):
            strip(value)


def reachable(defs, root):
    """Names of the definitions root refers to, directly or not."""
    seen, todo = set(), [root]
    while todo:
        node = todo.pop()
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith(DEF_PREFIX):
                name = ref[len(DEF_PREFIX):]
                if name not in seen:
                    seen.add(name)
                    todo.append(defs[name])
            todo.extend(v for k, v in node.items() if k != "$ref")
        elif isinstance(node, list):
            todo.extend(node)
    return seen


def file_name(kind, group, version):
    """kubeconform's '{{ .ResourceKind }}{{ .KindSuffix }}.json'."""
    suffix = "-" + group.split(".")[0].lower() if group else ""
    return "%s%s-%s.json" % (kind.lower(), suffix, version.lower())


def write(outdir, name, schema):
    with open(os.path.join(outdir, name), "w") as f:
        json.dump(schema, f, separators=(",", ":"), sort_keys=True)


def from_swagger(spec, outdir):
    defs = spec["definitions"]
    for name in NUMERIC_STRINGS:
        defs[name] = {"oneOf": [{"type": "string"}, {"type": "number"}]}
    for d in defs.values():
        strip(d)
    count = 0
    for name, d in sorted(defs.items()):
        for gvk in d.get("x-kubernetes-group-version-kind", []):
            schema = copy.deepcopy(d)
            schema.pop("x-kubernetes-group-version-kind", None)
            needed = reachable(defs, schema)
            if needed:
                schema["definitions"] = {n: defs[n] for n in sorted(needed)}
            schema["$schema"] = "http://json-schema.org/draft-07/schema#"
            write(outdir, file_name(gvk["kind"], gvk["group"], gvk["version"]), schema)
            count += 1
    return count


def from_crd(text, outdir):
    count = 0
    for doc in yaml.safe_load_all(text):
        if not doc or doc.get("kind") != "CustomResourceDefinition":
            continue
        spec = doc["spec"]
        for v in spec["versions"]:
            schema = copy.deepcopy(v["schema"]["openAPIV3Schema"])
            strip(schema)
            schema["$schema"] = "http://json-schema.org/draft-07/schema#"
            write(outdir, file_name(spec["names"]["kind"], spec["group"], v["name"]), schema)
            count += 1
    return count


KEDA_TAG = re.compile(r'keda:"([^"]*)"')


def from_scaler(source, scaler_type, outdir):
    """The trigger-metadata parameters of one KEDA scaler, as a JSON schema."""
    props, required = {}, []
    for tag in KEDA_TAG.findall(source):
        fields = dict(f.split("=", 1) if "=" in f else (f, True) for f in tag.split(","))
        orders = str(fields.get("order", "")).split(";")
        if "name" not in fields or "triggerMetadata" not in orders:
            continue
        name = fields["name"]
        prop = {"type": "string"}
        if "enum" in fields:
            prop["enum"] = fields["enum"].split(";")
        props[name] = prop
        if "resolvedEnv" in orders:
            props[name + "FromEnv"] = {"type": "string"}
        if "optional" not in fields and "default" not in fields:
            if "resolvedEnv" in orders:
                required.append({"anyOf": [{"required": [name]}, {"required": [name + "FromEnv"]}]})
            else:
                required.append({"required": [name]})
    if not props:
        sys.exit("k8s_schemas: no keda:\"name=...\" tags read for scaler %s" % scaler_type)
    schema = {"$schema": "http://json-schema.org/draft-07/schema#", "type": "object",
              "properties": props, "additionalProperties": False}
    if required:
        schema["allOf"] = required
    write(outdir, "_keda-trigger-%s.json" % scaler_type, schema)
    return 1


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("outdir")
    p.add_argument("--swagger", help="swagger.json")
    p.add_argument("--swagger-zip", help="a module zip holding */api/openapi-spec/swagger.json")
    p.add_argument("--crd", action="append", default=[], help="a CRD YAML file")
    p.add_argument("--crd-zip", help="a module zip holding CRD YAML files")
    p.add_argument("--crd-glob", action="append", default=[],
                   help="members of --crd-zip to read, e.g. '*/config/crd/bases/keda.sh_*.yaml'")
    p.add_argument("--scaler", action="append", default=[],
                   help="TYPE=GLOB: a KEDA scaler's Go source in --crd-zip, e.g. "
                        "'kafka=*/pkg/scalers/kafka_scaler.go'")
    a = p.parse_args()
    os.makedirs(a.outdir, exist_ok=True)
    n = 0
    if a.swagger:
        with open(a.swagger) as f:
            n += from_swagger(json.load(f), a.outdir)
    if a.swagger_zip:
        with zipfile.ZipFile(a.swagger_zip) as z:
            member = [m for m in z.namelist() if m.endswith("/api/openapi-spec/swagger.json")]
            if len(member) != 1:
                sys.exit("k8s_schemas: %s: expected one api/openapi-spec/swagger.json, found %d"
                         % (a.swagger_zip, len(member)))
            n += from_swagger(json.loads(z.read(member[0])), a.outdir)
    for path in a.crd:
        with open(path) as f:
            n += from_crd(f.read(), a.outdir)
    if a.crd_zip:
        with zipfile.ZipFile(a.crd_zip) as z:
            members = [m for m in z.namelist() if any(fnmatch.fnmatch(m, g) for g in a.crd_glob)]
            if not members:
                sys.exit("k8s_schemas: %s: no member matches %s" % (a.crd_zip, a.crd_glob))
            for m in sorted(members):
                n += from_crd(z.read(m).decode(), a.outdir)
            for spec in a.scaler:
                stype, _, glob = spec.partition("=")
                found = [m for m in z.namelist() if fnmatch.fnmatch(m, glob)]
                if len(found) != 1:
                    sys.exit("k8s_schemas: %s: expected one member matching %s, found %d"
                             % (a.crd_zip, glob, len(found)))
                n += from_scaler(z.read(found[0]).decode(), stype, a.outdir)
    print("k8s_schemas: wrote %d schemas to %s" % (n, a.outdir))


if __name__ == "__main__":
    main()
