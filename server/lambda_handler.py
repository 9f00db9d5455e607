"""AWS Lambda entry point: `server.lambda_handler.handler`.

Built at import, in Lambda's init phase, once per execution environment: settings come from the
environment (SLURM_GRAPHQL_*), as for the container. `python bench/cold_start.py` measures what
this import costs.
"""

from __future__ import annotations

import os

from server.gc_tuning import tune_for_serving
from server.lambda_app import handler_from_environ

handler = handler_from_environ(os.environ)
tune_for_serving()
