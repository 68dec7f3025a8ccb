"""What the deployment files name that other branches have not landed yet.

tests/test_deploy.py fails when an entry here exists: delete entries as they land, until both sets are empty.
"""

# `python -m server <command>` subcommands.
PENDING_COMMANDS: set[str] = set()
# Environment variables of Config (TRUSTED_PROXIES: the rate limiter, issue 5).
PENDING_ENV = {"TRUSTED_PROXIES"}
