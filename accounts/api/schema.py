"""The errors every API operation may answer, added to the OpenAPI schema (a
drf-spectacular postprocessing hook), so a client knows them and schemathesis checks them."""

from __future__ import annotations

DETAIL = {
    "type": "object",
    "properties": {"detail": {"type": "string"}},
    "required": ["detail"],
}
INVALID = {
    "type": "object",
    "description": "Each field's problems, in words (or `detail`).",
    "additionalProperties": True,
}
ERRORS = {
    "401": "No credentials, or a token that is unknown, revoked or malformed.",
    "403": "Not yours to do: a customer viewer's write, a staff-only route, a CSRF failure.",
    "429": "Too many failed authentications from this address: wait and try again.",
}


def _error(description: str, schema: dict, csv: bool) -> dict:
    content = {"application/json": {"schema": schema}}
    if csv:
        content["text/csv"] = {"schema": {"type": "string"}}
    return {"description": description, "content": content}


def error_responses(result: dict, generator, request, public) -> dict:
    for path, operations in result.get("paths", {}).items():
        if not path.startswith("/api/v1/"):
            continue
        for method, operation in operations.items():
            for parameter in operation.get("parameters", []):
                if parameter["in"] == "path" and parameter["schema"].get("type") == "integer":
                    parameter["schema"]["minimum"] = 0  # what the URL's <int:…> matches
            responses = operation.setdefault("responses", {})
            csv = any("text/csv" in r.get("content", {}) for r in responses.values())
            for code, words in ERRORS.items():
                responses.setdefault(code, _error(words, DETAIL, csv))
            if "{" in path:
                responses.setdefault(
                    "404", _error("No such object, or not one you may see.", DETAIL, csv)
                )
            if method in ("post", "put", "patch"):
                responses.setdefault("400", _error("The input is not valid.", INVALID, csv))
    return result
