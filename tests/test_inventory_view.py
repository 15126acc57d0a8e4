"""The inventory's HTTP view as the worker will serve it: rows, pages, CSV, refusals."""

from __future__ import annotations

import csv
import io
from typing import Any

import orjson
import pytest
from test_cli import SAMPLE

from pipeline.alerts.privacy import restrict
from pipeline.core.detect import Engine
from pipeline.core.inventory import Inventory, State
from pipeline.core.parse import parse_file
from pipeline.core.policy import Policy
from pipeline.core.records import SignIn
from pipeline.runtime.inventory_view import MAX_LIMIT, Response, handle, refuse_binding


def _sample() -> Inventory:
    book, engine = Inventory(Policy()), Engine(Policy())
    for record in parse_file(SAMPLE.read_bytes(), 1 << 20).records:
        if isinstance(record, SignIn):
            book.add(engine.enrich(record, None))
    return book


BOOK = _sample()


def users() -> list[tuple[str, State]]:
    return list(BOOK.users.items())


def get(path: str, token: str = "", authorization: str = "", **query: str) -> Response:
    return handle("GET", path, query, authorization, token, users)


def body(response: Response) -> dict[str, Any]:
    assert response.status == 200, response.body
    result: dict[str, Any] = orjson.loads(response.body)
    return result


def test_the_view_pages_through_scans_rows() -> None:
    every = BOOK.rows()
    first = body(get("/inventory", limit="10"))
    assert (first["total"], first["next"], first["rows"]) == (len(every), 10, every[:10])
    seen, offset = [], 0
    while offset is not None:
        page = body(get("/inventory", offset=str(offset), limit="25"))
        seen += page["rows"]
        offset = page["next"]
    assert seen == every


def test_one_user_by_upn_or_id_and_the_non_compliant_clients() -> None:
    (jonas,) = [r for r in BOOK.rows() if r["user"] == "jonas.weber@contoso.com"]
    for who in ("Jonas.Weber@contoso.com", jonas["user_id"]):
        assert body(get("/inventory", user=who))["rows"] == [jonas]
    bad = body(get("/inventory", non_compliant="1", limit=str(MAX_LIMIT)))["rows"]
    assert bad == BOOK.rows(non_compliant=True)


def test_csv_has_the_same_rows() -> None:
    response = get("/inventory.csv", non_compliant="1")
    assert response.content_type.startswith("text/csv")
    parsed = list(csv.DictReader(io.StringIO(response.body.decode())))
    expected = BOOK.rows(non_compliant=True)
    assert [(r["user"], r["version"], r["issue"]) for r in parsed] == [
        (r["user"], r["version"], r["issue"]) for r in expected
    ]


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH"])
def test_writes_are_refused(method: str) -> None:
    response = handle(method, "/inventory", {}, "", "", users)
    assert response.status == 405 and response.headers["Allow"] == "GET, HEAD"


def test_a_token_is_required_when_configured() -> None:
    assert get("/inventory", token="s3cret").status == 401
    assert get("/inventory", token="s3cret", authorization="Bearer wrong").status == 401
    assert get("/inventory", token="s3cret", authorization="Bearer s3cret").status == 200
    assert refuse_binding("127.0.0.1", "") is None
    assert refuse_binding("::1", "") is None
    assert refuse_binding("0.0.0.0", "") is not None
    assert refuse_binding("0.0.0.0", "s3cret") is None


def test_bad_requests_and_head() -> None:
    assert get("/elsewhere").status == 404
    assert get("/inventory", limit="0").status == 400
    assert get("/inventory", limit=str(MAX_LIMIT + 1)).status == 400
    assert get("/inventory", offset="x").status == 400
    head = handle("HEAD", "/inventory", {}, "", "", users)
    assert (head.status, head.body) == (200, b"")


def test_rows_are_pseudonymised_when_asked() -> None:
    response = handle(
        "GET", "/inventory", {}, "", "", users, lambda row: restrict(row, None, ("user",), b"k")
    )
    rows = body(response)["rows"]
    assert rows and all(r["user"].startswith("anon-") for r in rows)
    assert b"@contoso.com" not in response.body
