"""Every error code the code base can answer is in the README's error table, and the table
names no code that does not exist (codes collected with ``ast``: ``code=`` arguments,
``code = "…"`` class attributes, ``{"code": "…"}`` bodies, and the constants they name)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from traffic_platform.ingest.api import Api, Request, read_upload

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "traffic_platform"


def code_base_codes() -> dict[str, str]:
    found: dict[str, str] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        constants = {
            target.id: node.value.value
            for node in ast.walk(tree)
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)
            for target in node.targets
            if isinstance(target, ast.Name)
        }
        where = str(path.relative_to(ROOT))

        def add(value: ast.expr, where: str = where, constants: dict[str, str] = constants) -> None:
            if isinstance(value, ast.Constant) and isinstance(value.value, str):
                found.setdefault(value.value, where)
            elif isinstance(value, ast.Name) and value.id in constants:
                found.setdefault(constants[value.id], where)
            elif isinstance(value, ast.IfExp):
                add(value.body)
                add(value.orelse)
            else:  # passing another error's code on (``code``, ``exc.code``) adds no new code
                passes_on = (isinstance(value, ast.Name) and value.id == "code") or (
                    isinstance(value, ast.Attribute) and value.attr == "code")
                assert passes_on, f"{where}: code={ast.unparse(value)} cannot be checked"

        for node in ast.walk(tree):
            if isinstance(node, ast.keyword) and node.arg == "code":
                add(node.value)
            elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("_fail", "_bad"):
                add(node.args[0])  # metadata.py: _fail(NAME_…, message, name); counts_api.py: _bad(code, message)
            elif isinstance(node, ast.Tuple | ast.Call):
                # http_server.py: (status, code, message[, headers]) answers and
                # error_bytes(status, code, message) / _send_error(scope, send, status, code, …)
                items = node.elts if isinstance(node, ast.Tuple) else node.args
                for status, code in zip(items, items[1:], strict=False):
                    if (isinstance(status, ast.Constant) and type(status.value) is int and 400 <= status.value < 600
                            and isinstance(code, ast.Constant) and isinstance(code.value, str)):
                        add(code)
            elif isinstance(node, ast.ClassDef):
                for stmt in node.body:
                    if (isinstance(stmt, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "code" for t in stmt.targets)):
                        add(stmt.value)
            elif isinstance(node, ast.Dict):
                for key, value in zip(node.keys, node.values, strict=True):
                    # a dict-valued "code" is a JSON-schema property (openapi.py), not a code
                    if isinstance(key, ast.Constant) and key.value == "code" and not isinstance(value, ast.Dict):
                        add(value)
    return found


def readme_table_codes() -> set[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    table = text[text.index("| status | codes |"):]
    table = table[: table.index("\n\n")]
    return set(re.findall(r"`([a-z0-9_]+)`", table))


def test_every_code_is_in_the_readme_table_and_no_other():
    codes = code_base_codes()
    table = readme_table_codes()
    assert {"file_name_empty", "method_not_allowed", "detector_failed", "bad_event"} <= set(codes)  # the scan works
    missing = {code: where for code, where in codes.items() if code not in table}
    assert not missing, f"codes missing from the README's error table: {missing}"
    assert table <= set(codes), f"README lists codes nothing raises: {sorted(table - set(codes))}"


def test_a_multipart_part_without_a_name_is_missing_file_name_like_a_raw_body():
    boundary = "b0undary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"\r\nContent-Type: image/jpeg\r\n\r\n"
            f"xx\r\n--{boundary}--\r\n").encode()
    multipart = Request("POST", "/v1/images", headers={"content-type": f"multipart/form-data; boundary={boundary}"}, body=body)
    raw = Request("POST", "/v1/images", headers={"content-type": "image/jpeg"}, body=b"xx")
    api = Api(service=None)  # type: ignore[arg-type] - the name is checked before the service runs
    for request in (multipart, raw):
        response = api.handle(request)
        assert response.status == 400 and b'"missing_file_name"' in response.body
    blank = Request("POST", "/v1/images", query={"filename": "   "}, body=b"xx")
    assert read_upload(blank)[0] == "   "  # a blank name given is the parser's file_name_empty
