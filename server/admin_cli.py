"""`create-admin`: the first admin of a fresh deployment, password from a prompt or ADMIN_PASSWORD."""

from __future__ import annotations

import getpass
import os

import asyncpg
import pydantic

from .db import Q
from .schemas import Body, Email, Password, Username
from .security import hash_password


class NewAdmin(Body):
    email: Email
    username: Username
    password: Password


def read_password() -> str:
    """ADMIN_PASSWORD when set (for automation), else asked twice on the terminal; never an argument."""
    if password := os.environ.get("ADMIN_PASSWORD"):
        return password
    first = getpass.getpass("Password for the new admin: ")
    if getpass.getpass("Again: ") != first:
        raise ValueError("the two passwords differ")
    return first


async def create_admin(dsn: str, email: str, username: str, password: str) -> int:
    """The new admin's id; ValueError with a readable reason when the input or the database refuses."""
    try:
        admin = NewAdmin.model_validate({"email": email, "username": username, "password": password})
    except pydantic.ValidationError as exc:
        raise ValueError("; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())) from None
    conn = await asyncpg.connect(dsn)
    try:
        user_id = await conn.fetchval(Q.insert_admin, admin.email, admin.username, hash_password(admin.password))
    finally:
        await conn.close()
    if user_id is None:
        raise ValueError("that email or username is already taken")
    return user_id
