"""Checks coffer-server's served OpenAPI description: valid OpenAPI 3.1
(openapi-spec-validator), and every path in it routed by the live server (a request to each
operation does not fall through to the "no such path" answers).

Usage: openapi_check.py BASE_URL ADMIN_TOKEN
"""
import json
import re
import sys
import urllib.error
import urllib.request

from openapi_spec_validator import validate
from openapi_spec_validator.versions.shortcuts import get_spec_version

base, token = sys.argv[1].rstrip("/"), sys.argv[2]
with urllib.request.urlopen(base + "/openapi.json") as r:
    assert r.headers.get_content_type() == "application/json", r.headers
    spec = json.load(r)
validate(spec)
print(f"valid: {get_spec_version(spec)}, {len(spec['paths'])} paths")
assert spec["openapi"].startswith("3.1"), spec["openapi"]

UNROUTED = ("InvalidRequestPath", "PluginNotFound")
operations = 0
for path, item in spec["paths"].items():
    concrete = re.sub(r"\{seq\}", "1", path)
    concrete = re.sub(r"\{[^}]+\}", "nonexistent", concrete)
    for method in ("get", "post", "delete"):
        if method not in item:
            continue
        operations += 1
        data = b"{}" if method == "post" else None
        req = urllib.request.Request(base + concrete, data=data, method=method.upper(),
                                     headers={"Authorization": "Bearer " + token,
                                              "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req) as r:
                status, body = r.status, r.read()
        except urllib.error.HTTPError as e:
            status, body = e.code, e.read()
        kind = ""
        if status == 404:
            try:
                kind = json.loads(body)["type"].rsplit("/", 1)[-1]
            except (ValueError, KeyError):
                kind = "?"
        assert kind not in UNROUTED, f"{method.upper()} {concrete}: not routed ({status} {kind})"
        assert status < 500 or (path == "/kbs/v0/rvps/set_reference_value_list" and status == 501), \
            f"{method.upper()} {concrete}: {status} {body[:200]!r}"
print(f"routed: all {operations} operations")
