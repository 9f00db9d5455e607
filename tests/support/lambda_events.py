"""Lambda events shaped as AWS sends them: API Gateway REST (payload 1.0), HTTP API (2.0) and
ALB target groups, with every field AWS documents for each, and a runtime to invoke a handler in.

Each kind carries its quirks: REST sends headers twice (single and multi-value) with the query
decoded; HTTP API sends lower-case headers, a raw query string and cookies apart; an ALB sends
the query string as the client wrote it (still percent-encoded) and no request id.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import quote, urlencode

KINDS = ("rest", "http", "alb")
HOST = "abc123.execute-api.eu-west-1.amazonaws.com"
ALB_HOST = "slurm-graphql-123.eu-west-1.elb.amazonaws.com"
BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"


def event(
    kind: str,
    method: str,
    path: str,
    *,
    query: Mapping[str, str] | None = None,
    headers: Mapping[str, str] | None = None,
    body: bytes | None = None,
    base64_body: bool = False,
) -> dict[str, Any]:
    """One request as an event of `kind` (rest, http or alb)."""
    query = dict(query or {})
    headers = {
        "Host": HOST if kind != "alb" else ALB_HOST,
        "User-Agent": "Mozilla/5.0 (X11; Linux x86_64)",
        "X-Amzn-Trace-Id": "Root=1-67891233-abcdef012345678912345678",
        "X-Forwarded-For": "203.0.113.7",
        "X-Forwarded-Port": "443",
        "X-Forwarded-Proto": "https",
        **(headers or {}),
    }
    encoded_body = None
    if body is not None:
        encoded_body = base64.b64encode(body).decode() if base64_body else body.decode()
    if kind == "rest":
        return _rest(method, path, query, headers, encoded_body, base64_body)
    if kind == "http":
        return _http(method, path, query, headers, encoded_body, base64_body)
    if kind == "alb":
        return _alb(method, path, query, headers, encoded_body, base64_body)
    raise ValueError(kind)


def _rest(
    method: str,
    path: str,
    query: dict[str, str],
    headers: dict[str, str],
    body: str | None,
    is_base64: bool,
) -> dict[str, Any]:
    return {
        "resource": "/{proxy+}",
        "path": path,
        "httpMethod": method,
        "headers": headers,
        "multiValueHeaders": {k: [v] for k, v in headers.items()},
        "queryStringParameters": query or None,
        "multiValueQueryStringParameters": {k: [v] for k, v in query.items()} or None,
        "pathParameters": {"proxy": path.lstrip("/")},
        "stageVariables": None,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "abc123",
            "domainName": HOST,
            "domainPrefix": "abc123",
            "extendedRequestId": "c6af9ac6-7b61-11e6-9a41-93e8deadbeef",
            "httpMethod": method,
            "identity": {
                "accessKey": None,
                "accountId": None,
                "caller": None,
                "cognitoAuthenticationProvider": None,
                "cognitoAuthenticationType": None,
                "cognitoIdentityId": None,
                "cognitoIdentityPoolId": None,
                "principalOrgId": None,
                "sourceIp": "203.0.113.7",
                "user": None,
                "userAgent": headers["User-Agent"],
                "userArn": None,
            },
            "path": f"/prod{path}",
            "protocol": "HTTP/1.1",
            "requestId": "c6af9ac6-7b61-11e6-9a41-93e8deadbeef",
            "requestTime": "28/Nov/2026:13:05:01 +0000",
            "requestTimeEpoch": 1795870701000,
            "resourceId": "123456",
            "resourcePath": "/{proxy+}",
            "stage": "prod",
        },
        "body": body,
        "isBase64Encoded": is_base64,
    }


def _http(
    method: str,
    path: str,
    query: dict[str, str],
    headers: dict[str, str],
    body: str | None,
    is_base64: bool,
) -> dict[str, Any]:
    lowered = {k.lower(): v for k, v in headers.items()}
    cookies = lowered.pop("cookie", None)
    result: dict[str, Any] = {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": urlencode(query),
        "headers": lowered,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "abc123",
            "domainName": HOST,
            "domainPrefix": "abc123",
            "http": {
                "method": method,
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": "203.0.113.7",
                "userAgent": headers["User-Agent"],
            },
            "requestId": "JKJaXmPLvHcESHA=",
            "routeKey": "$default",
            "stage": "$default",
            "time": "28/Nov/2026:13:05:01 +0000",
            "timeEpoch": 1795870701000,
        },
        "isBase64Encoded": is_base64,
    }
    if query:
        result["queryStringParameters"] = query
    if cookies:
        result["cookies"] = cookies.split("; ")
    if body is not None:
        result["body"] = body
    return result


def _alb(
    method: str,
    path: str,
    query: dict[str, str],
    headers: dict[str, str],
    body: str | None,
    is_base64: bool,
) -> dict[str, Any]:
    return {
        "requestContext": {
            "elb": {
                "targetGroupArn": "arn:aws:elasticloadbalancing:eu-west-1:123456789012:"
                "targetgroup/slurm-graphql/49e9d65c45c6791a"
            }
        },
        "httpMethod": method,
        "path": path,
        # An ALB passes the query string as sent, percent-encoding and all.
        "queryStringParameters": {k: quote(v, safe="") for k, v in query.items()},
        "headers": {k.lower(): v for k, v in headers.items()},
        "body": body or "",
        "isBase64Encoded": is_base64,
    }


def graphql_post(
    kind: str,
    query: str,
    *,
    base64_body: bool = False,
    headers: Mapping[str, str] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A JSON POST of `query` to /graphql (with more `headers`, e.g. Authorization)."""
    payload = json.dumps({"query": query, **extra}).encode()
    headers = {"Content-Type": "application/json", "Accept": "application/json", **(headers or {})}
    return event(kind, "POST", "/graphql", headers=headers, body=payload, base64_body=base64_body)


def response_body(response: Mapping[str, Any]) -> bytes:
    """The body of a handler's response, decoded from base64 when it says so."""
    body = response.get("body") or ""
    return base64.b64decode(body) if response.get("isBase64Encoded") else body.encode()


def response_headers(response: Mapping[str, Any]) -> dict[str, str]:
    """Headers of a response in any of the shapes (single- or multi-value), lower-cased."""
    headers = {k.lower(): v for k, v in (response.get("headers") or {}).items()}
    for name, values in (response.get("multiValueHeaders") or {}).items():
        headers[name.lower()] = ", ".join(values)
    return headers


class LambdaRuntime:
    """One thread standing for one Lambda execution environment: the handler is built and
    invoked there, one event at a time, with an event loop of its own as Mangum expects."""

    def __init__(self, build: Callable[[], Callable[[dict[str, Any], Any], dict[str, Any]]]):
        self._thread = ThreadPoolExecutor(max_workers=1)
        self._handler = self._thread.submit(build).result()

    def invoke(self, event: dict[str, Any]) -> dict[str, Any]:
        return self._thread.submit(self._handler, event, None).result()

    def close(self) -> None:
        self._thread.submit(lambda: asyncio.get_event_loop().close()).result()
        self._thread.shutdown()
