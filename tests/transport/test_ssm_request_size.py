"""ssm://: what one SendCommand carries (64 KB for the document and its parameters), and what a
batch larger than that, or an answer larger than the inline output, becomes."""

from __future__ import annotations

import base64
import gzip
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from resolvers.slurm.history import MAX_IDS, HistoryQuery, history_command
from resolvers.slurm.history_listing import parse_listing
from server.settings import Settings
from server.tokens import parse_token_map
from tests.conftest import TOKENS, Aws
from tests.support.app import app_client
from transport import Command, OutputTooLarge, RequestTooLarge, open_transport
from transport.shell_batch import build_script, new_boundary
from transport.ssm import INLINE_STDOUT_LIMIT, SCRIPT_BUDGET, parts_within


def script_bytes(commands: Sequence[Command]) -> int:
    return len(build_script(commands, new_boundary()).encode())


def test_a_history_page_of_10000_jobs_is_cut_into_parts_that_each_fit() -> None:
    """A page of 10,000 jobs read by id (ten sacct of 1,000 ten-digit ids, as resolvers/history.py
    runs them in one batch: ~117 KB of script) is cut into consecutive parts, in order, each
    within the budget; a batch that fits stays whole (pure)."""
    now = int(time.time())
    ids = range(4_294_000_000, 4_294_010_000)
    reads = [
        history_command(
            HistoryQuery(now - 86_400, now + 60, id_list=tuple(ids[i : i + MAX_IDS])), "b0"
        )
        for i in range(0, len(ids), MAX_IDS)
    ]
    assert script_bytes(reads) > 2 * SCRIPT_BUDGET
    parts = parts_within(reads, script_bytes, SCRIPT_BUDGET)
    assert len(parts) > 2
    assert [command for part in parts for command in part] == reads
    assert all(script_bytes(part) <= SCRIPT_BUDGET for part in parts)
    assert parts_within(reads[:2], script_bytes, SCRIPT_BUDGET) == [reads[:2]]


async def test_a_batch_over_the_quota_is_sent_in_parts_and_answers_in_order(aws: Aws) -> None:
    """Forty commands of 4 KB each (~170 KB of script, which the endpoint refuses in one
    SendCommand as the service's quota does) go in several SendCommands, and their results come
    back complete and in the batch's order."""
    commands = [Command(("printf", "%s", f"{i}:" + "x" * 4000)) for i in range(40)]
    expected = len(parts_within(commands, script_bytes, SCRIPT_BUDGET))
    assert expected > 2
    transport = open_transport(aws.ssm_url())
    aws.endpoint.reset_stats()
    try:
        results = await transport.run(commands)
    finally:
        await transport.aclose()
    assert [r.stdout for r in results] == [f"{i}:" + "x" * 4000 for i in range(40)]
    assert all(r.exit_code == 0 for r in results)
    assert aws.endpoint.stats()["SendCommand"] == expected


async def test_a_command_over_the_quota_alone_is_refused_before_sending(aws: Aws) -> None:
    """One command larger than a SendCommand carries is RequestTooLarge, and nothing is sent."""
    transport = open_transport(aws.ssm_url())
    aws.endpoint.reset_stats()
    try:
        with pytest.raises(RequestTooLarge, match="not sent"):
            await transport.run([Command(("true",)), Command(("printf", "x" * 70_000))])
    finally:
        await transport.aclose()
    assert "SendCommand" not in aws.endpoint.stats()


SUBMIT = """mutation($script: String!) { submitJob(input: {script: $script, name: "big"}) {
  __typename ... on JobSubmitted { job { id } } ... on SubmitRejected { code message } } }"""


async def test_a_users_oversized_script_over_ssm_is_bad_input_and_runs_nothing(
    aws: Aws, unix_users: None
) -> None:
    """alice submits a 100 KB batch script through ssm:// (the API takes scripts up to 4 MB): she
    gets BAD_USER_INPUT naming scriptS3Uri, no SendCommand is made, and no job is queued; the
    same request is not an outage (SLURM_UNAVAILABLE), which is what the service's refusal was."""
    transport = open_transport(aws.ssm_url())
    settings = Settings(cache_ttl=0.0, tokens=parse_token_map(TOKENS))
    script = "#!/bin/sh\n" + "# padding\n" * 10_000 + "true\n"
    aws.endpoint.reset_stats()
    try:
        async with app_client(settings, {"local": transport}) as client:
            response = await client.post(
                "/graphql",
                json={"query": SUBMIT, "variables": {"script": script}},
                headers={"Authorization": "Bearer alice-token"},
            )
    finally:
        await transport.aclose()
    body = response.json()
    assert body.get("data") is None or body["data"].get("submitJob") is None, body
    [error] = body["errors"]
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert "scriptS3Uri" in error["message"] and "nothing was run" in error["message"]
    assert "SendCommand" not in aws.endpoint.stats()


async def test_a_listing_larger_than_the_inline_output_is_read_from_the_bucket(
    aws: Aws, tmp_path: Path
) -> None:
    """A window's listing of 21,000 jobs (rows shaped as the 24.11 capture's) is ~140,000
    characters of gzip+base64, past SSM's 24,000 inline: with a bucket it is read whole from S3
    and parses to every job; without one it is OutputTooLarge (clients: OUTPUT_TOO_LARGE), never
    a truncated listing parsed as a shorter one."""
    rows = "".join(
        f"{n}\x1f{n}\x1f{1796294004 + n % 600}\x1f{1796294005 + n % 900}\n" for n in range(21_000)
    )
    assert len(base64.b64encode(gzip.compress(rows.encode()))) > 4 * INLINE_STDOUT_LIMIT
    listing = tmp_path / "listing.out"
    listing.write_text(rows)
    cat = Command(("cat", str(listing)))
    with_bucket = open_transport(aws.ssm_url())
    try:
        [result] = await with_bucket.run([cat])
    finally:
        await with_bucket.aclose()
    assert result.stdout == listing.read_text()
    assert len(parse_listing(result.stdout)) == 21_000
    without = open_transport(aws.ssm_url(bucket=False))
    try:
        with pytest.raises(OutputTooLarge, match=r"\?bucket="):
            await without.run([cat])
    finally:
        await without.aclose()
