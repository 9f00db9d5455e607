"""The transport's errors: what can go wrong between the server and a head node.

They hang from the project's one error tree, drawn in slurm_graphql/errors.py. Backends translate
their own library's errors into these at their edge (`raise X(...) from exc`): nothing above the
transport ever sees a botocore or OS error.
"""

from __future__ import annotations

from slurm_graphql.errors import SlurmGraphQLError


class TransportError(SlurmGraphQLError):
    """A batch could not be run on the head node."""


class TransportTimeout(TransportError):
    """A batch did not finish before its deadline; what it started has been stopped."""


class TransportUnavailable(TransportError):
    """The head node (or the program asked for) cannot be reached at all."""


class HeadNodeNotFound(TransportUnavailable):
    """No running instance is tagged as the cluster's head node."""


class TransportThrottled(TransportError):
    """The service throttled the calls even after retrying with backoff."""


class UnsafeParameter(TransportError):
    """A document parameter held `{{`, which Run Command would resolve (a parameter store
    reference, for one) before the head node saw it; the batch was not sent."""


class OutputTooLarge(TransportError):
    """Output was truncated in transit and the full copy is out of reach."""


class RequestTooLarge(TransportError):
    """A command is larger than the service accepts in one request (ssm://: SendCommand's 64 KB
    for the document and its parameters); it was not sent."""
