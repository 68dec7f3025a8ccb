"""What the deployment files name that other branches have not landed yet.

tests/test_deploy.py fails when an entry here exists: delete entries as they land (both sets are empty now;
keep the file for the next deployment change that runs ahead of its code).
"""

# `python -m server <command>` subcommands.
PENDING_COMMANDS: set[str] = set()
# Environment variables of Config.
PENDING_ENV: set[str] = set()
