"""What the deployment files name that other branches have not landed yet.

tests/test_deploy.py fails when an entry here exists: delete entries as they land, until both sets are empty.
"""

# `python -m server <command>` subcommands (the worker: issue 6).
PENDING_COMMANDS = {"worker"}
# Environment variables of Config (SMTP_URL: issue 6; TRUSTED_PROXIES: issue 5).
PENDING_ENV = {"SMTP_URL", "TRUSTED_PROXIES"}
