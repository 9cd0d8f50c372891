"""Validate the project's JSON files against Microsoft's published schemas, offline.

A file's ``$schema`` URL under ``https://developer.microsoft.com/json-schemas/fabric/`` names the
schema and its version; the local copy in ``<repo>/../shared/schemas/microsoft-json-schemas/``
(read-only, never copied into the repo) holds the same path. A ``referencing`` registry maps
every URL under that prefix to the local file, so the schemas' relative ``$ref`` s resolve too.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

from jsonschema import Draft7Validator
from referencing import Registry, Resource
from referencing.exceptions import NoSuchResource

from .project import REPO

PREFIX = "https://developer.microsoft.com/json-schemas/fabric/"
SCHEMAS = REPO.parent / "shared" / "schemas" / "microsoft-json-schemas" / "fabric"


def local_path(url: str, schemas: Path = SCHEMAS) -> Path:
    if not url.startswith(PREFIX):
        raise ValueError(f"$schema {url!r} is not under {PREFIX}")
    path = schemas / url[len(PREFIX) :]
    if (
        not path.exists() and path.name == "schema.embedded.json"
    ):  # $id spelling of schema-embedded.json
        path = path.with_name("schema-embedded.json")
    return path


@cache
def _registry(schemas: Path) -> Registry:
    def retrieve(uri: str) -> Resource:
        path = local_path(uri.split("#")[0], schemas)
        if not path.exists():
            raise NoSuchResource(ref=uri)
        return Resource.from_contents(json.loads(path.read_text(encoding="utf-8")))

    return Registry(retrieve=retrieve)


def schema_errors(document: object, schemas: Path = SCHEMAS) -> list[str]:
    """Why ``document`` fails the schema its ``$schema`` names ([] if it validates)."""
    if not isinstance(document, dict) or not isinstance(document.get("$schema"), str):
        return ["no $schema URL"]
    path = local_path(document["$schema"], schemas)
    if not path.exists():
        return [f"schema {document['$schema']} is not in the local copy {schemas}"]
    schema = json.loads(path.read_text(encoding="utf-8"))
    validator = Draft7Validator(schema, registry=_registry(schemas))
    return sorted(
        f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
        for e in validator.iter_errors(document)
    )
