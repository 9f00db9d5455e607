"""The ASGI app, settings, auth, the Lambda handler and the CLI: the only layer that knows HTTP."""

from server.packages import check_own_packages

check_own_packages()
