"""A cluster that answers from recordings of the real cluster, scaled to a large job count.

Partitions, nodes and the version are the golden captures verbatim; squeue is the synthetic
cluster built from golden rows (bench/synthetic.py), framed with the boundary each call asks for.
For benchmarks only: it measures our side of a round trip, not the head node's.
"""

from __future__ import annotations

from bench.synthetic import golden_text, synthetic_squeue
from resolvers.slurm.jobs import RECORD_SEPARATOR
from resolvers.slurm.nodes import show_nodes_command
from transport.base import Command, CommandResult

_TEMPLATE_BOUNDARY = "recorded0boundary"


class RecordedCluster:
    """Answers one command from the recordings: MockTransport's handler
    (`MockTransport(RecordedCluster(jobs), url="recorded://")`)."""

    def __init__(self, jobs: int) -> None:
        self._squeue = synthetic_squeue(jobs, _TEMPLATE_BOUNDARY)
        self._answers = {
            ("scontrol", "--oneliner", "--all", "show", "partition"): golden_text("partitions"),
            show_nodes_command().argv: golden_text("nodes"),
            ("scontrol", "--version"): golden_text("version"),
        }

    def __call__(self, command: Command) -> CommandResult:
        return CommandResult(command.argv, self._answer(command), "", 0)

    def _answer(self, command: Command) -> str:
        if command.argv[0] == "squeue":
            spec = next(a for a in command.argv if a.startswith("--Format="))
            boundary = spec.rsplit(RECORD_SEPARATOR, 1)[1]
            return self._squeue.replace(_TEMPLATE_BOUNDARY, boundary)
        return self._answers[command.argv]
