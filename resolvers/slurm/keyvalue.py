"""`scontrol -o` lines: `Key=value Key2=value with spaces ...`, one record per line. Pure.

Values may hold spaces (OS=Linux 6.1.0 #1 SMP, Reason=disk failure) and even `=` (CfgTRES=cpu=4).
A key starts after a space and is followed by `=`. Free-text values (a node's Reason, a job's
Comment) can contain something that looks like ` Key=`: such a piece is kept in the free-text value
unless its key is one the record type is known to have.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

# A key: after the line start or a space, followed by `=` (the value runs to the next key).
KEY = re.compile(r"(?:^| )([A-Za-z][A-Za-z0-9_:/]*)=")


def split_lines(text: str) -> list[str]:
    """Non-empty lines, whatever the line ends (LF, CRLF) and with or without a final newline."""
    return [line for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n") if line]


def parse_record(
    line: str, known_keys: frozenset[str], free_text: frozenset[str]
) -> dict[str, str]:
    """The key/value pairs of one `scontrol -o` line."""
    matches = list(KEY.finditer(line))
    record: dict[str, str] = {}
    previous: str | None = None
    for index, match in enumerate(matches):
        key = match.group(1)
        end = matches[index + 1].start() if index + 1 < len(matches) else len(line)
        value = line[match.end() : end]
        if previous in free_text and key not in known_keys:
            # " word=x" inside a free-text value: glue it back on.
            record[previous] += line[match.start() : end]
            continue
        record[key] = value
        previous = key
    return record


def parse_records(
    text: str, known_keys: Iterable[str], free_text: Iterable[str]
) -> list[dict[str, str]]:
    known, free = frozenset(known_keys), frozenset(free_text)
    return [parse_record(line, known, free) for line in split_lines(text)]
