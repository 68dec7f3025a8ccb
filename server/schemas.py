"""Request bodies as pydantic models: strict types, unknown fields refused, every fault reported."""

from __future__ import annotations

import re
from typing import Annotated, Literal

import email_validator
from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError

# Single-line text refuses every control character; multi-line text allows tab, LF and CR.
_CONTROL_LINE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_CONTROL_TEXT = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
USERNAME = re.compile(r"[A-Za-z0-9_]{3,32}")  # always fullmatch: `$` matches before a final newline
TAG = re.compile(r"[a-z0-9-]{1,32}")


def _fail(kind: str, message: str):
    raise PydanticCustomError(kind, message)


def _single_line(value: str) -> str:
    if _CONTROL_LINE.search(value):
        _fail("control_characters", "must not contain control characters")
    return value


def _multi_line(value: str) -> str:
    if _CONTROL_TEXT.search(value):
        _fail("control_characters", "must not contain control characters")
    return value


def _not_blank(value: str) -> str:
    if not value.strip():
        _fail("blank", "must not be blank")
    return value


def _email(value: str) -> str:
    if len(value) > 254:
        _fail("email", "must be at most 254 characters")
    try:
        # test_environment: addresses at `.test` domains (RFC 2606), which test suites use, are accepted.
        return email_validator.validate_email(value, check_deliverability=False, test_environment=True).normalized
    except email_validator.EmailNotValidError:
        _fail("email", "must be a valid email address")


def _username(value: str) -> str:
    if not USERNAME.fullmatch(value):
        _fail("username", "must be 3-32 letters, digits or underscores")
    return value


def text(min_length: int, max_length: int, *checks) -> type[str]:
    return Annotated[str, Field(min_length=min_length, max_length=max_length), *map(AfterValidator, checks)]


Email = Annotated[str, AfterValidator(_email)]
Username = Annotated[str, AfterValidator(_username)]
Password = text(8, 128)
DisplayName = text(0, 64, _single_line)
Bio = text(0, 1000, _multi_line)


class Body(BaseModel):
    """Strict JSON bodies: no coercion ("1" is not 1), no unknown or read-only fields, camelCase names."""

    model_config = ConfigDict(strict=True, extra="forbid", alias_generator=to_camel, populate_by_name=False,
                              frozen=True)


class SignUp(Body):
    email: Email
    username: Username
    password: Password
    display_name: DisplayName = ""
    bio: Bio = ""


class Login(Body):
    email: text(1, 254, _single_line)  # PostgreSQL text cannot hold NUL: it must not reach the query
    password: text(1, 128)


class RefreshToken(Body):
    refresh_token: str


class UserPatch(Body):
    """Absent fields stay as they are; null is not a value for any of them."""

    display_name: DisplayName = None
    bio: Bio = None
    current_password: text(1, 128) = None
    password: Password = None


class AdminUserPatch(Body):
    role: Literal["user", "admin"] = None
    disabled: bool = None


# Posts, comments and tags. Lengths count code points; a title is one line, bodies may have line breaks.
MAX_TAGS = 10


def _tag(value: str) -> str:
    name = value.strip().lower()
    if not TAG.fullmatch(name):
        _fail("tag", "must be 1-32 of a-z, 0-9 and - (after trimming and lower-casing)")
    return name


def _tag_set(names: list[str]) -> list[str]:
    unique = sorted(set(names))  # sorted: the order tags are shown in, and the order they are locked in
    if len(unique) > MAX_TAGS:
        _fail("too_many_tags", f"must have at most {MAX_TAGS} different tags")
    return unique


Title = text(1, 200, _single_line, _not_blank)
PostText = text(1, 50_000, _multi_line, _not_blank)
CommentText = text(1, 5_000, _multi_line, _not_blank)
# The raw list is capped too, so a body cannot make us validate thousands of repeated names.
Tags = Annotated[list[Annotated[str, AfterValidator(_tag)]], Field(max_length=100), AfterValidator(_tag_set)]


class PostCreate(Body):
    title: Title
    body: PostText
    tags: Tags = Field(default_factory=list)


class PostPatch(Body):
    """Absent fields stay as they are; `tags` replaces the whole set; null is not a value for any of them."""

    title: Title = None
    body: PostText = None
    tags: Tags = None


class CommentCreate(Body):
    body: CommentText


# What pydantic's error types mean to an API client.
_MESSAGES = {
    "missing": "is required",
    "extra_forbidden": "is not an allowed field",
    "string_type": "must be a string",
    "int_type": "must be an integer",
    "bool_type": "must be a boolean",
    "list_type": "must be an array",
    "model_type": "must be an object",
    "dict_type": "must be an object",
}


def error_details(errors: list[dict]) -> list[dict]:
    """pydantic's errors as `[{field, message}]`, with `tags[3]` and `author.id` style field names."""
    details = []
    for e in errors:
        field = ""
        for part in e["loc"]:
            field += f"[{part}]" if isinstance(part, int) else (f".{part}" if field else str(part))
        kind, ctx = e["type"], e.get("ctx") or {}
        if kind == "string_too_short":
            message = "must not be empty" if ctx.get("min_length") == 1 else f"must be at least {ctx['min_length']} characters"
        elif kind == "string_too_long":
            message = f"must be at most {ctx['max_length']} characters"
        elif kind == "literal_error":
            message = f"must be one of {ctx['expected']}"
        elif kind == "too_long":
            message = f"must have at most {ctx['max_length']} items"
        elif kind == "too_short":
            message = f"must have at least {ctx['min_length']} items"
        else:
            message = _MESSAGES.get(kind) or e["msg"]
        details.append({"field": field or "body", "message": message})
    return details
