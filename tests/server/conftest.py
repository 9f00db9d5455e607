"""Fixtures the server tests share."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.squeue_counter import SqueueCounter


@pytest.fixture
def counter() -> Iterator[SqueueCounter]:
    """The squeue wrapper that counts every run (its directory goes first on PATH through
    `path_environ()`), removed afterwards."""
    made = SqueueCounter()
    try:
        yield made
    finally:
        made.close()
