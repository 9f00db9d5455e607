"""Which jobs a request may see: the one place that decides it.

A request's `Visibility` is a function of its identity and of SLURM_GRAPHQL_JOB_VISIBILITY. Every
snapshot a GraphQL type is built on is first seen through it (`Snapshot.seen_by`), which keeps
only the jobs it may see and marks the copy with it. The Job type refuses to exist on a snapshot
that is not such a view, or for a record its view's audience may not see (`check_visible`): a
resolver that forgets to filter fails loudly instead of leaking. Subscriptions' watches and
mutations' payloads go through the same `seen_by`, so nested fields (`node { jobs }`,
`job { nodes { jobs } } }`), counts, events and payloads all answer from one filtered list.

Under `own`, another user's job is indistinguishable from one that does not exist: it is absent
from lists and counts, `job(id)` is null, following it ends as following an unknown id does, and
acting on it is refused with the same JOB_NOT_FOUND and message as acting on a missing job (see
resolvers/mutations.py), decided on the head node before the action runs.

This module knows no snapshot, scope or query: they import it, never the other way
(tests/test_imports.py), so that what decides sits below everything it decides for.
"""

from __future__ import annotations

from dataclasses import dataclass

from resolvers.identity import Identity
from slurm_graphql.errors import SlurmGraphQLError


class OutOfSight(SlurmGraphQLError, RuntimeError):
    """A Job was about to be shown from a snapshot that is not a request's view, or to an
    audience that may not see it: a bug in a resolver, refused rather than leaked."""


@dataclass(frozen=True, slots=True)
class Visibility:
    """Whose jobs a request may see: everyone's, or those of `owner` alone."""

    everyone: bool
    owner: str | None = None

    @classmethod
    def of(cls, identity: Identity, own_jobs_only: bool) -> Visibility:
        """`own_jobs_only` is SLURM_GRAPHQL_JOB_VISIBILITY=own. Administrators see every job;
        any other identity, an anonymous one included, sees its user's jobs (`nobody` owns
        none). Every identity names a user (resolvers/identity.py): none stands for the server."""
        if not own_jobs_only or identity.admin:
            return EVERYONE
        return cls(everyone=False, owner=identity.user)

    def sees(self, user: str) -> bool:
        """May this audience see a job of `user`?"""
        return self.everyone or user == self.owner


EVERYONE = Visibility(everyone=True)


def check_visible(audience: Visibility | None, user: str | None = None) -> None:
    """Raise OutOfSight unless a snapshot's `audience` is set (the snapshot is a request's view,
    made by Snapshot.seen_by) and, if `user` is given, sees a job of `user`. Every schema type
    built on a snapshot calls it with that snapshot's audience."""
    if audience is None:
        raise OutOfSight("a type was built on a snapshot no audience was applied to")
    if user is not None and not audience.sees(user):
        raise OutOfSight("a job was about to be shown to an audience that may not see it")
