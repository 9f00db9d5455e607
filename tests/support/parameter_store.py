"""Parameter Store for the local SSM endpoint, and Run Command's resolution of references to it.

Run Command replaces `{{ssm:NAME}}` and `{{ssm-secure:NAME}}` in a document's parameter values
with the parameter's value before the agent gets the document, so whatever a command's text holds
is resolved with the rights of the caller of SendCommand. The endpoint does the same, from this
store, so a client that lets such a reference through can be caught reading a secret.

What a client can tell is copied: spaces are allowed inside the braces (`{{ ssm:NAME }}`), a
version may follow the name (`NAME:2`), `ssm:` resolves String and StringList
parameters and `ssm-secure:` SecureString ones, and a reference to a missing parameter or of the
wrong kind fails SendCommand with InvalidParameters. Parameters are written and read through the
ordinary API (PutParameter, GetParameter, DeleteParameter), so tests use boto3 against the
endpoint. Values are kept in memory as given: this is a test double, not a vault.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any

TYPES = frozenset({"String", "StringList", "SecureString"})
NAME = re.compile(r"^/?[A-Za-z0-9_.\-]+(/[A-Za-z0-9_.\-]+)*\Z")
# `{{ ssm:NAME }}`, `{{ssm-secure:NAME:VERSION}}`: what Run Command resolves in parameter values.
REFERENCE = re.compile(r"\{\{\s*(ssm|ssm-secure):([^{}\s]+)\s*\}\}")
KIND_OF = {"ssm": ("String", "StringList"), "ssm-secure": ("SecureString",)}


class ParameterStoreError(Exception):
    """An AWS error of the Parameter Store API (the endpoint answers it as HTTP 400)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Version:
    value: str
    type: str
    version: int
    modified: float


class ParameterStore:
    """Named parameters, each a list of versions (the last is current)."""

    def __init__(self, region: str) -> None:
        self.region = region
        self._parameters: dict[str, list[Version]] = {}

    # --- the API -------------------------------------------------------------------------------

    async def put_parameter(self, body: dict[str, Any]) -> dict[str, Any]:
        name, value, kind = body.get("Name"), body.get("Value"), body.get("Type", "String")
        if not isinstance(name, str) or not NAME.match(name):
            raise ParameterStoreError("ValidationException", f"invalid parameter name {name!r}")
        if not isinstance(value, str) or not value:
            raise ParameterStoreError("ValidationException", "Value must be a non-empty string")
        versions = self._parameters.setdefault(name, [])
        if versions and not body.get("Overwrite"):
            raise ParameterStoreError("ParameterAlreadyExists", f"{name} already exists")
        if kind not in TYPES or (versions and kind != versions[-1].type):
            raise ParameterStoreError("ValidationException", f"bad Type {kind!r} for {name}")
        versions.append(Version(value, kind, len(versions) + 1, time.time()))
        return {"Version": len(versions), "Tier": "Standard"}

    async def get_parameter(self, body: dict[str, Any]) -> dict[str, Any]:
        selector = body.get("Name")
        found = self._find(selector if isinstance(selector, str) else "")
        if found is None:
            raise ParameterStoreError("ParameterNotFound", f"Parameter {selector} not found.")
        name, version = found
        value = version.value
        if version.type == "SecureString" and not body.get("WithDecryption"):
            value = "AQICAHh…(encrypted)"  # what a client gets without decryption: not the value
        return {
            "Parameter": {
                "Name": name,
                "Type": version.type,
                "Value": value,
                "Version": version.version,
                "LastModifiedDate": version.modified,
                "ARN": f"arn:aws:ssm:{self.region}:123456789012:parameter/{name.lstrip('/')}",
                "DataType": "text",
            }
        }

    async def delete_parameter(self, body: dict[str, Any]) -> dict[str, Any]:
        name = body.get("Name")
        if self._parameters.pop(name if isinstance(name, str) else "", None) is None:
            raise ParameterStoreError("ParameterNotFound", f"Parameter {name} not found.")
        return {}

    # --- Run Command's resolution --------------------------------------------------------------

    def resolve(self, text: str) -> str:
        """`text` with every `{{ssm:…}}` / `{{ssm-secure:…}}` replaced by the parameter's value;
        InvalidParameters if one names a missing parameter or one of the other kind."""

        def value(match: re.Match[str]) -> str:
            prefix, selector = match.group(1), match.group(2)
            found = self._find(selector)
            if found is None or found[1].type not in KIND_OF[prefix]:
                raise ParameterStoreError(
                    "InvalidParameters",
                    f"document parameter reference {{{{{prefix}:{selector}}}}} cannot be resolved",
                )
            return found[1].value

        return REFERENCE.sub(value, text)

    def _find(self, selector: str) -> tuple[str, Version] | None:
        """The parameter `NAME` or `NAME:VERSION` names, if any."""
        name, _, which = selector.partition(":")
        versions = self._parameters.get(name)
        if not versions:
            return None
        if not which:
            return name, versions[-1]
        for version in versions:
            if str(version.version) == which:
                return name, version
        return None
