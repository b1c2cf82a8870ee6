"""Generate kinds/_protobuf_tables.json from kube's generated.proto files (and the Go types beside them).

Usage (the three repositories as git checkouts or bare mirrors, any path):

    python tools/gen_protobuf_tables.py --api ~/src/kubernetes/api \\
        --apimachinery ~/src/kubernetes/apimachinery --aggregator ~/src/kubernetes/kube-aggregator \\
        --tag v0.33.9 > kinds/_protobuf_tables.json

What it reads, per package in PACKAGES:

- ``generated.proto``: every message, its fields' numbers, proto types, ``repeated`` and ``map<>``;
- the package's Go files: for each struct field with a ``protobuf:"..."`` tag, its JSON name (the
  ``json`` tag; ``,inline`` fields are flattened into their parent in JSON), whether the Go field is
  a pointer (a zero value on the wire is still a value), and whether the JSON tag lacks
  ``omitempty`` (Go writes the zero value, so the decoder does too).

Output (compact JSON): ``messages``: ``{name: {number: [json, type, flags, map_value_type]}}`` with
``flags`` = 1 repeated, 2 pointer, 4 inline, 8 zero is written; ``special``: messages whose JSON form
is not an object (Time, Quantity, IntOrString, ...; see kinds/_protobuf.py); ``kinds``:
``{apiVersion: {kind: message}}`` for every message with ``metadata`` (objects and lists).
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys

# (repository, directory, proto package short name, API group or None, version)
PACKAGES: list[tuple[str, str, str, str | None, str]] = [
    ("apimachinery", "pkg/runtime", "runtime", None, ""),
    ("apimachinery", "pkg/util/intstr", "intstr", None, ""),
    ("apimachinery", "pkg/api/resource", "resource", None, ""),
    ("apimachinery", "pkg/apis/meta/v1", "meta.v1", None, "v1"),
    ("api", "core/v1", "core.v1", "", "v1"),
    ("api", "apps/v1", "apps.v1", "apps", "v1"),
    ("api", "batch/v1", "batch.v1", "batch", "v1"),
    ("api", "autoscaling/v1", "autoscaling.v1", "autoscaling", "v1"),
    ("api", "autoscaling/v2", "autoscaling.v2", "autoscaling", "v2"),
    ("api", "networking/v1", "networking.v1", "networking.k8s.io", "v1"),
    ("api", "policy/v1", "policy.v1", "policy", "v1"),
    ("api", "scheduling/v1", "scheduling.v1", "scheduling.k8s.io", "v1"),
    ("api", "storage/v1", "storage.v1", "storage.k8s.io", "v1"),
    ("api", "discovery/v1", "discovery.v1", "discovery.k8s.io", "v1"),
    ("api", "node/v1", "node.v1", "node.k8s.io", "v1"),
    ("api", "certificates/v1", "certificates.v1", "certificates.k8s.io", "v1"),
    ("api", "events/v1", "events.v1", "events.k8s.io", "v1"),
    ("api", "coordination/v1", "coordination.v1", "coordination.k8s.io", "v1"),
    ("api", "authentication/v1", "authentication.v1", "authentication.k8s.io", "v1"),
    ("api", "authentication/v1beta1", "authentication.v1beta1", "authentication.k8s.io", "v1beta1"),
    ("api", "authentication/v1alpha1", "authentication.v1alpha1", "authentication.k8s.io", "v1alpha1"),
    ("api", "authorization/v1", "authorization.v1", "authorization.k8s.io", "v1"),
    ("api", "rbac/v1", "rbac.v1", "rbac.authorization.k8s.io", "v1"),
    ("api", "admissionregistration/v1", "admissionregistration.v1", "admissionregistration.k8s.io", "v1"),
    ("aggregator", "pkg/apis/apiregistration/v1", "apiregistration.v1", "apiregistration.k8s.io", "v1"),
]

# Messages whose JSON is not an object, by how the codec writes them (kinds/_protobuf.py).
SPECIAL = {
    "meta.v1.Time": "time",
    "meta.v1.MicroTime": "micro_time",
    "meta.v1.Duration": "duration",
    "meta.v1.FieldsV1": "fields_v1",
    "resource.Quantity": "quantity",
    "intstr.IntOrString": "int_or_string",
    "runtime.RawExtension": "raw_extension",
}

SCALARS = {"string", "bytes", "bool", "int32", "int64"}
REPEATED, POINTER, INLINE, ZERO = 1, 2, 4, 8

_MESSAGE = re.compile(r"^message (\w+) \{\n(.*?)^\}", re.MULTILINE | re.DOTALL)
_FIELD = re.compile(r"^\s*(optional|repeated)?\s*(map<\s*string\s*,\s*([\w.]+)\s*>|[\w.]+)\s+(\w+)\s*=\s*(\d+)\s*;",
                    re.MULTILINE)
_STRUCT = re.compile(r"^type (\w+) struct \{\n(.*?)^\}", re.MULTILINE | re.DOTALL)
_SLICE_TYPE = re.compile(r"^type (\w+) \[\]string\b", re.MULTILINE)
_GO_FIELD = re.compile(r"^\s*(?:(\w+)\s+)?(\*?)[\w.\[\]*]+\s+`([^`]*)`", re.MULTILINE)
_TAG = re.compile(r'(\w+):"([^"]*)"')


def git(repo: str, *args: str) -> str:
    return subprocess.run(["git", "-C", repo, *args], check=True, capture_output=True, text=True).stdout


def short_name(ref: str, package: str, packages: dict[str, str]) -> str:
    """``.k8s.io.api.core.v1.PodSpec`` -> ``core.v1.PodSpec``; an unqualified name is the package's."""
    if not ref.startswith("."):
        return f"{package}.{ref}"
    full, _, name = ref[1:].rpartition(".")
    if full not in packages:
        raise SystemExit(f"{ref}: proto package {full} is not in PACKAGES")
    return f"{packages[full]}.{name}"


def go_fields(repo: str, tag: str, directory: str) -> tuple[dict[tuple[str, int], tuple[str, bool, bool, bool]],
                                                             set[str]]:
    """(struct, proto number) -> (json name, pointer, inline, zero written); and ``[]string`` types."""
    out: dict[tuple[str, int], tuple[str, bool, bool, bool]] = {}
    slices: set[str] = set()
    files = [f for f in git(repo, "ls-tree", "--name-only", f"{tag}:{directory}").split()
             if f.endswith(".go") and not f.endswith("_test.go") and not f.startswith("zz_")]
    for f in files:
        src = git(repo, "show", f"{tag}:{directory}/{f}")
        slices |= set(_SLICE_TYPE.findall(src))
        for struct, body in _STRUCT.findall(src):
            for m in _GO_FIELD.finditer(body):
                tags = dict(_TAG.findall(m.group(3)))
                proto = tags.get("protobuf")
                if not proto or not re.match(r"\w+,\d+,", proto):
                    continue
                number = int(proto.split(",")[1])
                json_tag = tags.get("json", "").split(",")
                inline = "inline" in json_tag[1:]
                name = json_tag[0] or (m.group(1) or "")
                zero = not inline and "omitempty" not in json_tag[1:] and not m.group(2)
                out[(struct, number)] = (name, bool(m.group(2)), inline, zero)
    return out, slices


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--api", required=True)
    ap.add_argument("--apimachinery", required=True)
    ap.add_argument("--aggregator", required=True)
    ap.add_argument("--tag", default="v0.33.9")
    args = ap.parse_args()
    repos = {"api": args.api, "apimachinery": args.apimachinery, "aggregator": args.aggregator}
    messages: dict[str, dict[str, list]] = {}
    special = dict(SPECIAL)
    kinds: dict[str, dict[str, str]] = {}
    protos = {short: git(repos[repo_key], "show", f"{args.tag}:{directory}/generated.proto")
              for repo_key, directory, short, _, _ in PACKAGES}
    packages = {re.search(r"^package ([\w.]+);", text, re.MULTILINE).group(1): short  # type: ignore[union-attr]
                for short, text in protos.items()}
    for repo_key, directory, short, group, version in PACKAGES:
        repo = repos[repo_key]
        proto = protos[short]
        # runtime, intstr and resource are read by position (their JSON is special, see SPECIAL).
        go, slices = go_fields(repo, args.tag, directory) if group is not None or short == "meta.v1" else ({}, set())
        for msg, body in _MESSAGE.findall(proto):
            name = f"{short}.{msg}"
            fields: dict[str, list] = {}
            for label, typ, map_value, field, number in _FIELD.findall(body):
                num = int(number)
                json_name, pointer, inline, zero = go.get((msg, num), (field, False, False, False))
                value = None
                if typ.startswith("map<"):
                    typ, value = "map", (map_value if map_value in SCALARS else short_name(map_value, short, packages))
                elif typ[0].islower() and "." not in typ and typ not in SCALARS:
                    raise SystemExit(f"{name}.{field}: scalar type {typ} is not supported")
                elif typ not in SCALARS:
                    typ = short_name(typ, short, packages)
                flags = (REPEATED if label == "repeated" else 0) | (POINTER if pointer else 0)
                flags |= (INLINE if inline else 0) | (ZERO if zero and typ in SCALARS and label != "repeated" else 0)
                fields[str(num)] = [json_name, typ, flags] + ([value] if value else [])
            messages[name] = fields
            if msg in slices and list(fields.values()) == [["items", "string", REPEATED]]:
                special[name] = "strings"
            meta = fields.get("1")
            if group is not None and meta and meta[0] == "metadata" and meta[1] in ("meta.v1.ObjectMeta",
                                                                                     "meta.v1.ListMeta"):
                api_version = f"{group}/{version}" if group else version
                kinds.setdefault(api_version, {})[msg] = name
    json.dump({"source": f"k8s.io/api, apimachinery, kube-aggregator {args.tag} generated.proto + Go types",
               "messages": messages, "special": special, "kinds": kinds},
              sys.stdout, separators=(",", ":"), sort_keys=True)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
