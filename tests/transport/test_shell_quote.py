"""The shell backends' quoting: a word comes back from /bin/sh unchanged, and what is sent never
holds `{{`, which SSM Run Command would resolve (`{{ssm:NAME}}`) before the shell saw it."""

from __future__ import annotations

import itertools
import shlex
import subprocess
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from transport import Command, UnsafeParameter
from transport.shell_batch import build_script, checked_parameters, join, quote

# The characters that matter to sh and to Run Command, and one that matters to neither.
ALPHABET = "{}'\" $\\a"
SHORT = [
    "".join(letters)
    for length in range(6)
    for letters in itertools.product(ALPHABET, repeat=length)
]
# Any text a client could send through argv (NUL cannot be in an argument).
WORDS = st.text(st.characters(exclude_characters="\x00", codec="utf-8"), max_size=40)
BRACEY = st.text(st.sampled_from("{}'\"$ \\:ssm-/"), max_size=30)


def shell_words(quoted: Sequence[str]) -> list[str]:
    """What /bin/sh makes of each quoted word: printed NUL-terminated by its own printf."""
    script = "".join(f"printf '%s\\0' {word}\n" for word in quoted)
    done = subprocess.run(
        ["/bin/sh", "-s"], input=script.encode(), capture_output=True, check=True, timeout=60
    )
    return done.stdout.decode().split("\0")[:-1]


def test_every_short_word_is_quoted_without_two_braces() -> None:
    """Every word of up to 5 characters over {, }, quotes, space, $, backslash and a: its
    quoted form holds no `{{`."""
    assert len(SHORT) == 37_449
    assert [word for word in SHORT if "{{" in quote(word)] == []


def test_every_short_word_comes_back_from_the_shell_unchanged() -> None:
    """/bin/sh reads each of those quoted words back as the word itself."""
    assert shell_words([quote(word) for word in SHORT]) == SHORT


def test_every_short_word_comes_back_from_shlex_unchanged() -> None:
    """shlex (POSIX rules) splits each quoted word back into exactly that word."""
    assert [word for word in SHORT if shlex.split(quote(word)) != [word]] == []


@pytest.mark.parametrize(
    "reference",
    [
        "{{ssm:/prod/api-key}}",
        "{{ssm-secure:/prod/db-password}}",
        "{{ ssm:/prod/api-key }}",
        "{{{ssm:/prod/api-key}}}",
        "x{{ssm:a}}y{{ssm:b}}",
        "{{resolve:ssm:/prod/api-key}}",
        "{{commands}}",
        "it's {{ssm:a}}",
    ],
)
def test_references_are_quoted_apart(reference: str) -> None:
    """The parameter references a client could try come out without `{{` and come back whole."""
    assert "{{" in shlex.quote(reference)  # what shlex alone would have sent
    assert "{{" not in quote(reference)
    assert shell_words([quote(reference)]) == [reference]


@settings(max_examples=150, deadline=None)
@given(st.lists(st.one_of(WORDS, BRACEY), min_size=1, max_size=6))
def test_joined_words_never_hold_two_braces_and_come_back(argv: list[str]) -> None:
    """Any argv, joined: no `{{` within a word or across the spaces between words, and the
    shell reads back exactly that argv."""
    joined = join(argv)
    assert "{{" not in joined
    assert shlex.split(joined) == argv
    assert shell_words([joined]) == argv


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.one_of(WORDS, BRACEY), min_size=1, max_size=4),
    st.dictionaries(st.sampled_from(["A", "B_C", "SLURM_X"]), st.one_of(WORDS, BRACEY)),
    st.one_of(st.none(), st.binary(max_size=40)),
)
def test_a_whole_batch_script_never_holds_two_braces(
    argv: list[str], env: dict[str, str], stdin: bytes | None
) -> None:
    """The script of a batch (prelude, locks, environment, users, argv, stdin) passes the
    parameter check whatever the command carries."""
    command = Command(("echo", *argv), env=env, stdin=stdin, user="alice", lock="jobs")
    script = build_script([command, Command(("true",))], "sgq0", pass_env=("AWS_REGION",))
    assert checked_parameters({"commands": [script]}) == {"commands": [script]}


@pytest.mark.parametrize("value", ["{{ssm:x}}", "a{{b", "{{", "echo ok\n{{ ssm-secure:x }}"])
def test_the_parameter_check_refuses_any_two_braces(value: str) -> None:
    """A parameter value with `{{` anywhere is refused with the typed error, whatever its name."""
    with pytest.raises(UnsafeParameter):
        checked_parameters({"commands": ["echo fine", value]})
    with pytest.raises(UnsafeParameter):
        checked_parameters({"workingDirectory": [value]})


def test_the_parameter_check_lets_single_braces_through() -> None:
    """Single braces (shell groups, `${VAR}`) are what scripts are made of: they pass."""
    parameters = {"commands": ["{ echo ${HOME}; } '{'\"{\"'}'"], "executionTimeout": ["60"]}
    assert checked_parameters(parameters) is parameters
