"""Requests that are wrong get a client error, never a server fault.

A body that is not UTF-8, not JSON, nested beyond the parser's reach, or JSON of the wrong shape is
answered 400 with a coded GraphQL error body (`BAD_REQUEST`), as is anything else strawberry refuses
before execution (its own refusals are plain text otherwise). A variable of the wrong type is the
client's mistake too: graphql-core reports it before execution, and it gets `BAD_USER_INPUT` instead
of being masked as an internal error.
"""

from __future__ import annotations

import json
from typing import Any

from cross_web import HTTPException
from graphql import GraphQLError
from starlette.responses import JSONResponse, Response
from strawberry.schema.exceptions import InvalidOperationTypeError

BAD_REQUEST = "BAD_REQUEST"
BAD_USER_INPUT = "BAD_USER_INPUT"
GRAPHQL_PARSE_FAILED = "GRAPHQL_PARSE_FAILED"
GRAPHQL_VALIDATION_FAILED = "GRAPHQL_VALIDATION_FAILED"


def parse_request_json(data: str | bytes) -> Any:
    """A request's JSON: an object, or a list of objects (a batch); anything else is 400."""
    try:
        value = json.loads(data)
    except UnicodeDecodeError:
        raise HTTPException(400, "The request body is not valid UTF-8") from None
    except ValueError:
        raise HTTPException(400, "Unable to parse request body as JSON") from None
    except RecursionError:
        raise HTTPException(400, "The request body is nested too deeply") from None
    if isinstance(value, dict):
        return value
    if isinstance(value, list) and all(isinstance(item, dict) for item in value):
        return value
    raise HTTPException(400, "The request body must be a JSON object")


def is_client_error(error: GraphQLError) -> bool:
    """The client's own mistake, though it wraps an exception: an operation of a type the
    protocol does not run (strawberry's InvalidOperationTypeError). Variables of the wrong type
    are coded where the executor is built (server/budget.py)."""
    return isinstance(error.original_error, InvalidOperationTypeError)


def client_error_response(status_code: int, reason: str) -> Response:
    """Strawberry's refusal of a malformed request, as a coded GraphQL error body."""
    body = {"errors": [{"message": reason, "extensions": {"code": BAD_REQUEST}}]}
    return JSONResponse(body, status_code=status_code)
