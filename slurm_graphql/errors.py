"""The one exception tree of slurm-graphql.

    SlurmGraphQLError
    ├── TransportError                 the head node could not be asked, or did not answer
    │   ├── TransportTimeout           a batch took longer than its deadline
    │   ├── TransportUnavailable       nothing to talk to (no agent, instance gone, binary missing)
    │   │   ├── HeadNodeNotFound       no running head node carries the cluster's tags
    │   │   └── UnsafeLockDirectory    the head node's lock directory is unsafe (locks.py)
    │   ├── TransportThrottled         the service kept refusing for rate, after retries
    │   ├── UnsafeParameter            a value the service would resolve ({{ssm:…}}): not sent
    │   ├── OutputTooLarge             output was truncated on the way and cannot be recovered
    │   └── RequestTooLarge            a command larger than the service takes in one request
    ├── CommandFailed                  a command ran and exited non-zero (resolvers/slurm/errors.py)
    ├── SlurmError                     Slurm said no, classified by kind (resolvers/slurm/errors.py)
    ├── ParseError                     output did not have the shape we asked for
    ├── CorruptSharedValue             a value read back from Redis is not ours (shared_codec.py)
    ├── SharedUnavailable              Redis did not answer: the replica acts alone (shared.py)
    ├── BadUserInput                   a client's id, filter, name or page is wrong (ids.py)
    ├── InvalidSubmission              a submitJob/updateJob field is wrong, named (job_fields.py)
    ├── InvalidUserName                not a POSIX user name (resolvers/identity.py)
    ├── ClusterNotFound                no cluster of that name (resolvers/context.py)
    ├── Unauthenticated                the operation needs a proven identity (resolvers/identity.py)
    ├── IdentityRefused                claims name an account never acted as (server/floor.py)
    ├── CredentialExpired              a token its issuer signed, past its expiry (server/auth.py)
    ├── DocumentRefused                a document over a cap, before parsing (server/documents.py)
    ├── TooIntricate                   a document's cost has too many terms to plan (server/cost.py)
    ├── PersistedQueryRefused          an unknown hash, a wrong one, the allow-list (persisted.py)
    ├── MalformedMessage               a WebSocket message that is not JSON (message_limit.py)
    ├── OutputForbidden                the API will not read that output file (resolvers/output.py)
    ├── SubscriberTooSlow              a subscriber fell too far behind (resolvers/poller.py)
    ├── InternalPollError              a poll failed inside the server (resolvers/poller.py)
    ├── OutOfSight                     a type was built on data no audience was applied to
    └── SettingsError                  a configuration value is wrong (server/settings_error.py)
        ├── TokenMapError              a token map entry is wrong (server/tokens.py)
        └── ManifestError              the persisted-query manifest is wrong (server/persisted.py)
            └── UiDocumentsError       the dashboard's documents.js is not plain (ui_manifest.py)

Client mistakes also derive from the built-in error they are (ValueError, LookupError), so code
that catches those still does. Backends translate their own library's errors into these at their
edge (`raise X(...) from exc`); nothing above the transport ever sees a botocore or OS error.
The root lives here, beneath every layer (server → schema → resolvers → transport →
slurm_graphql, tests/test_imports.py): this module imports nothing, so a parser raising
ParseError or a setting refusing a value depends on no transport. Each class is defined beside
the code that raises it (the module named in parentheses; the transport's in transport/errors.py);
tests/test_errors.py checks that every exception class the project defines is in this drawing,
under its real parent.
(server/packages.py's ForeignPackage is the one exception outside: it checks that these packages
are this project's own before any of them is imported.)
"""

from __future__ import annotations


class SlurmGraphQLError(Exception):
    """Root of every error this project raises on purpose."""
