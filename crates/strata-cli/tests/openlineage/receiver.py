#!/usr/bin/env python3
"""An OpenLineage HTTP receiver for the integration tests: it checks every run
event it is sent against the OpenLineage spec and records what it got.

    OL_EVENTS=events.jsonl python3 receiver.py        # prints "listening PORT"
    python3 receiver.py --check event.json ...        # validate files, no server
    python3 receiver.py --print-schema                # the schema it validates with

Server: listens on 127.0.0.1 on a free port, prints `listening PORT` on one
line, then serves until killed. Every POST (any path; clients post to
/api/v1/lineage) is one run event. It is validated, then one JSON line
    {"path": ..., "valid": true|false, "errors": [...], "warnings": [...], "event": {...}}
is appended to $OL_EVENTS (default ./events.jsonl) before the answer goes out:
200 when valid, 400 with the errors as text when not.

Where the schema comes from. No PyPI package ships the OpenLineage JSON schema
files: openlineage-python (1.54.0 checked), openlineage-integration-common and
openlineage-sql carry none of OpenLineage.json or spec/facets/*.json. What
openlineage-python does ship is its model generated from those files
(openlineage.client.generated, one attrs class per `$defs` entry, each with the
official `$id#/$defs/Name` URL, its fields, which of them are required, and
validators for the uuid / date-time / uri formats). This script rebuilds the
JSON schema documents from that installed model at start-up, under the
official `$id`s and `$defs` names, and validates with jsonschema + referencing:
the run event against `OpenLineage.json#/$defs/RunEvent`, each standard facet
against `<Facet>.json#/$defs/<Facet>`. Nothing is copied into this repository,
so the spec version is the one of the pinned openlineage-python
(scripts/requirements-test.txt).

Beyond the schema, it reports as errors a standard facet under the wrong key
place (e.g. outputStatistics in outputs[].facets instead of outputFacets) and a
`_schemaURL` / `schemaURL` naming another schema than the facet's / RunEvent's;
a URL naming the right schema at another version is only a warning.
"""

from __future__ import annotations

import argparse
import enum
import gzip
import importlib
import importlib.metadata
import inspect
import json
import os
import sys
import threading
import types
import typing
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import attr
from jsonschema import Draft202012Validator
from referencing import Registry
from referencing.jsonschema import DRAFT202012

GENERATED = "openlineage.client.generated"
DIALECT = "https://json-schema.org/draft/2020-12/schema"

# Where each standard facet key lives in a run event, and the generated class
# (module in openlineage.client.generated, class name) that models its schema.
PLACES = {
    "run": "run.facets",
    "job": "job.facets",
    "dataset": "inputs[].facets / outputs[].facets",
    "input": "inputs[].inputFacets",
    "output": "outputs[].outputFacets",
}
STANDARD_FACETS = {
    "run": {
        "parent": ("parent_run", "ParentRunFacet"),
        "errorMessage": ("error_message_run", "ErrorMessageRunFacet"),
        "nominalTime": ("nominal_time_run", "NominalTimeRunFacet"),
    },
    "job": {
        "sql": ("sql_job", "SQLJobFacet"),
        "jobType": ("job_type_job", "JobTypeJobFacet"),
        "documentation": ("documentation_job", "DocumentationJobFacet"),
        "ownership": ("ownership_job", "OwnershipJobFacet"),
    },
    "dataset": {
        "schema": ("schema_dataset", "SchemaDatasetFacet"),
        "columnLineage": ("column_lineage_dataset", "ColumnLineageDatasetFacet"),
        "documentation": ("documentation_dataset", "DocumentationDatasetFacet"),
        "ownership": ("ownership_dataset", "OwnershipDatasetFacet"),
        "dataQualityMetrics": ("data_quality_metrics_dataset", "DataQualityMetricsDatasetFacet"),
    },
    "input": {
        "dataQualityMetrics": (
            "data_quality_metrics_input_dataset",
            "DataQualityMetricsInputDatasetFacet",
        ),
    },
    "output": {
        "outputStatistics": (
            "output_statistics_output_dataset",
            "OutputStatisticsOutputDatasetFacet",
        ),
    },
}

# The client fills these in itself, so its model gives them defaults; on the
# wire the spec requires them (BaseEvent: producer, schemaURL; BaseFacet:
# _producer, _schemaURL).
WIRE_REQUIRED = {"producer", "schemaURL", "_producer", "_schemaURL"}


def own_schema_url(cls: type) -> str | None:
    """The official `$id#/$defs/Name` of a generated class, if it has its own."""
    getter = cls.__dict__.get("_get_schema")
    if getter is None:
        return None
    url = getter.__func__() if isinstance(getter, staticmethod) else getter()
    return url if "#/$defs/" in url else None


def validator_format(field: attr.Attribute) -> str | None:
    """The JSON-schema format a generated field validator stands for."""
    validators = getattr(field.validator, "_validators", None) or [field.validator]
    for v in validators:
        if v is None:
            continue
        try:
            src = inspect.getsource(v)
        except (OSError, TypeError):
            continue
        if "UUID(" in src:
            return "uuid"
        if "isoparse" in src:
            return "date-time"
        if "urlparse" in src:
            return "uri"
    return None


class SchemaBuilder:
    """Turns the generated attrs model back into JSON-schema documents keyed by
    the official `$id`s, with `$ref`s between them by absolute URL."""

    def __init__(self) -> None:
        self.docs: dict[str, dict] = {}

    def ref(self, cls: type) -> dict:
        url = own_schema_url(cls)
        if url is None:
            return self.object_schema(cls)
        doc_id, _, pointer = url.partition("#")
        name = pointer.rsplit("/", 1)[1]
        doc = self.docs.setdefault(doc_id, {"$schema": DIALECT, "$id": doc_id, "$defs": {}})
        if name not in doc["$defs"]:
            doc["$defs"][name] = {}  # placeholder: recursive types refer to it
            doc["$defs"][name] = self.object_schema(cls)
        return {"$ref": url}

    def object_schema(self, cls: type) -> dict:
        hints = typing.get_type_hints(cls)
        properties, required = {}, []
        for field in attr.fields(cls):
            schema = self.type_schema(hints[field.name])
            fmt = validator_format(field)
            if fmt:
                schema = {**schema, "format": fmt}
            properties[field.name] = schema
            if field.default is attr.NOTHING or field.name in WIRE_REQUIRED:
                required.append(field.name)
        return {
            "title": f"{cls.__module__}.{cls.__qualname__}",
            "type": "object",
            "properties": properties,
            "required": required,
        }

    def type_schema(self, tp: typing.Any) -> dict:
        origin, args = typing.get_origin(tp), typing.get_args(tp)
        if origin in (typing.Union, types.UnionType):
            # `X | None` in the model means "may be left out"; JSON null is
            # not allowed by the spec (the client strips None before sending).
            options = [a for a in args if a is not type(None)]
            if len(options) == 1:
                return self.type_schema(options[0])
            return {"anyOf": [self.type_schema(a) for a in options]}
        if origin is list:
            return {"type": "array", "items": self.type_schema(args[0])}
        if origin is dict:
            return {"type": "object", "additionalProperties": self.type_schema(args[1])}
        if tp is str:
            return {"type": "string"}
        if tp is bool:
            return {"type": "boolean"}
        if tp is int:
            return {"type": "integer"}
        if tp is float:
            return {"type": "number"}
        if tp is typing.Any or tp is object:
            return {}
        if isinstance(tp, type) and issubclass(tp, enum.Enum):
            return {"type": "string", "enum": [m.value for m in tp]}
        if isinstance(tp, type) and attr.has(tp):
            return self.ref(tp)
        raise TypeError(f"no JSON schema for type {tp!r}")


class Spec:
    """Validators for the run event and each standard facet."""

    def __init__(self) -> None:
        self.version = importlib.metadata.version("openlineage-python")
        base = importlib.import_module(f"{GENERATED}.base")
        self.source = os.path.dirname(base.__file__)
        builder = SchemaBuilder()
        self.run_event_url = builder.ref(base.RunEvent)["$ref"]
        self.facets: dict[str, dict[str, tuple[str, type]]] = {}
        for place, keys in STANDARD_FACETS.items():
            for key, (module, name) in keys.items():
                cls = getattr(importlib.import_module(f"{GENERATED}.{module}"), name)
                self.facets.setdefault(place, {})[key] = (builder.ref(cls)["$ref"], cls)
        self.docs = builder.docs

        for doc in self.docs.values():
            Draft202012Validator.check_schema(doc)
        registry = Registry().with_resources(
            (doc_id, DRAFT202012.create_resource(doc)) for doc_id, doc in self.docs.items()
        )
        checker = Draft202012Validator.FORMAT_CHECKER
        missing = {"uuid", "date-time", "uri"} - set(checker.checkers)
        if missing:
            raise SystemExit(
                f"jsonschema cannot check the formats {sorted(missing)}: install "
                "rfc3339-validator and rfc3986-validator (scripts/requirements-test.txt)"
            )
        self.validators = {
            url: Draft202012Validator({"$ref": url}, registry=registry, format_checker=checker)
            for url in [self.run_event_url]
            + [u for keys in self.facets.values() for u, _ in keys.values()]
        }
        # If the generated model changed shape, say so rather than validate less.
        core = self.docs[self.run_event_url.partition("#")[0]]["$defs"]
        expectations = [
            (core["Run"]["properties"]["runId"].get("format"), "uuid"),
            (core["RunEvent"]["properties"]["eventTime"].get("format"), "date-time"),
            (core["RunEvent"]["properties"]["producer"].get("format"), "uri"),
            (sorted(core["RunFacet"]["required"]), ["_producer", "_schemaURL"]),
        ]
        for got, want in expectations:
            if got != want:
                raise SystemExit(f"openlineage-python {self.version}: unexpected model ({got!r}, wanted {want!r})")

    def validate(self, event: typing.Any) -> tuple[list[str], list[str]]:
        errors: list[str] = []
        warnings: list[str] = []
        if not isinstance(event, dict):
            return [f"$: an OpenLineage run event is a JSON object, got {type(event).__name__}"], []
        errors += schema_errors(self.validators[self.run_event_url], event, "$")
        check_url(event.get("schemaURL"), self.run_event_url, "$.schemaURL", errors, warnings)

        places = []
        if isinstance(event.get("run"), dict):
            places.append(("run", "$.run.facets", event["run"].get("facets")))
        if isinstance(event.get("job"), dict):
            places.append(("job", "$.job.facets", event["job"].get("facets")))
        for side, own, place in (("inputs", "inputFacets", "input"), ("outputs", "outputFacets", "output")):
            datasets = event.get(side)
            if not isinstance(datasets, list):
                continue
            for i, dataset in enumerate(datasets):
                if isinstance(dataset, dict):
                    places.append(("dataset", f"$.{side}[{i}].facets", dataset.get("facets")))
                    places.append((place, f"$.{side}[{i}].{own}", dataset.get(own)))

        for place, path, facets in places:
            if not isinstance(facets, dict):
                continue  # absent, or already reported by the run-event schema
            for key, facet in facets.items():
                where = f"{path}.{key}"
                known = self.facets.get(place, {}).get(key)
                if known is None:
                    homes = [PLACES[p] for p, keys in self.facets.items() if key in keys]
                    if homes:
                        errors.append(
                            f"{where}: '{key}' is a standard facet of {' and '.join(homes)}, "
                            f"not of {PLACES[place]}"
                        )
                    continue  # a custom facet: the run-event schema checked _producer/_schemaURL
                url, _ = known
                errors += schema_errors(self.validators[url], facet, where)
                if isinstance(facet, dict):
                    check_url(facet.get("_schemaURL"), url, f"{where}._schemaURL", errors, warnings)
        # A standard facet is checked by the run-event schema as well: say each thing once.
        return list(dict.fromkeys(errors)), warnings


def json_path(base: str, parts) -> str:
    out = base
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else f".{p}"
    return out


def schema_errors(validator: Draft202012Validator, instance: typing.Any, base: str) -> list[str]:
    found = sorted(validator.iter_errors(instance), key=lambda e: [str(p) for p in e.absolute_path])
    return [f"{json_path(base, e.absolute_path)}: {e.message}" for e in found]


def check_url(actual: typing.Any, expected: str, where: str, errors: list, warnings: list) -> None:
    """A (_)schemaURL must name the schema of the thing it sits on."""
    if not isinstance(actual, str):
        return  # missing or not a string: the schema already said so
    exp_doc, _, exp_ptr = expected.partition("#")
    act_doc, _, act_ptr = actual.partition("#")
    if act_doc.rsplit("/", 1)[-1] != exp_doc.rsplit("/", 1)[-1] or (act_ptr and act_ptr != exp_ptr):
        errors.append(f"{where}: {actual!r} is not this schema; expected {expected!r}")
    elif actual != expected:
        warnings.append(f"{where}: {actual!r} differs from the pinned spec's {expected!r}")


def parse_event(body: bytes) -> tuple[typing.Any, list[str]]:
    def no_constant(name: str):
        raise ValueError(f"{name} is not JSON")

    try:
        return json.loads(body.decode("utf-8"), parse_constant=no_constant), []
    except (UnicodeDecodeError, ValueError) as e:
        return None, [f"$: the body is not JSON: {e}"]


class Receiver(BaseHTTPRequestHandler):
    server_version = "openlineage-test-receiver"
    spec: Spec
    events_file: str
    lock = threading.Lock()

    def read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            body = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                body += self.rfile.read(size)
                self.rfile.readline()
        else:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.headers.get("Content-Encoding", "").lower() == "gzip":
            body = gzip.decompress(body)
        return body

    def do_POST(self) -> None:
        try:
            body = self.read_body()
        except (ValueError, OSError, EOFError) as e:
            self.answer(400, f"cannot read the request body: {e}\n")
            return
        event, errors = parse_event(body)
        warnings: list[str] = []
        if not errors:
            errors, warnings = self.spec.validate(event)
        record = {
            "path": self.path,
            "valid": not errors,
            "errors": errors,
            "warnings": warnings,
            "event": event,
        }
        line = json.dumps(record, sort_keys=False) + "\n"
        with self.lock:
            with open(self.events_file, "a", encoding="utf-8") as f:
                f.write(line)
                f.flush()
        if errors:
            self.answer(400, "invalid OpenLineage event:\n" + "\n".join(errors) + "\n")
        else:
            self.answer(200, json.dumps({"valid": True, "warnings": warnings}) + "\n", "application/json")

    def do_GET(self) -> None:
        self.answer(405, "POST OpenLineage events here\n")

    do_PUT = do_DELETE = do_PATCH = do_GET

    def answer(self, status: int, text: str, ctype: str = "text/plain; charset=utf-8") -> None:
        data = text.encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args) -> None:  # noqa: A002
        sys.stderr.write(f"receiver: {format % args}\n")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", nargs="+", metavar="FILE", help="validate event files and exit")
    ap.add_argument("--print-schema", action="store_true", help="print the schema documents and exit")
    args = ap.parse_args()

    spec = Spec()
    if args.print_schema:
        json.dump(spec.docs, sys.stdout, indent=2)
        print()
        return 0
    if args.check:
        bad = 0
        for name in args.check:
            with open(name, "rb") as f:
                event, errors = parse_event(f.read())
            warnings: list[str] = []
            if not errors:
                errors, warnings = spec.validate(event)
            bad += bool(errors)
            print(f"{name}: {'invalid' if errors else 'valid'}")
            for msg in errors:
                print(f"  error: {msg}")
            for msg in warnings:
                print(f"  warning: {msg}")
        return 1 if bad else 0

    Receiver.spec = spec
    Receiver.events_file = os.environ.get("OL_EVENTS") or "events.jsonl"
    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    server.daemon_threads = True
    sys.stderr.write(
        f"receiver: validating against the schema of openlineage-python {spec.version} "
        f"({spec.source}), events to {os.path.abspath(Receiver.events_file)}\n"
    )
    print(f"listening {server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
