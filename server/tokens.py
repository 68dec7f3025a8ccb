"""Access tokens (RS256 JWTs with a `kid`, RFC 9068 `typ`) and opaque refresh tokens. No aiohttp."""

from __future__ import annotations

import base64
import dataclasses
import fcntl
import hashlib
import json
import logging
import re
import secrets
import time
import uuid
from collections import OrderedDict
from pathlib import Path

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

log = logging.getLogger("server.tokens")

ALGORITHM = "RS256"  # pinned: verification accepts nothing else
TOKEN_TYPE = "at+jwt"  # RFC 9068
LEEWAY = 30  # seconds of clock skew tolerated (API.md: at most 30 s)
REQUIRED_CLAIMS = ["sub", "role", "iss", "aud", "iat", "exp", "jti", "sid"]
ROLES = ("user", "admin")
VERIFIED_TOKENS = 4096  # verified tokens remembered per process (about 4 MiB)
_PEM_BLOCK = re.compile(rb"-----BEGIN [A-Z ]*KEY-----.+?-----END [A-Z ]*KEY-----", re.S)
_REFRESH = re.compile(r"[A-Za-z0-9_-]{43}")


class TokenError(Exception):
    """The token is not acceptable; `expired` tells TOKEN_EXPIRED from INVALID_TOKEN."""

    def __init__(self, reason: str, expired: bool = False) -> None:
        super().__init__(reason)
        self.expired = expired


@dataclasses.dataclass(frozen=True, slots=True)
class Claims:
    user_id: int
    role: str
    session_id: int


def thumbprint(public_key: rsa.RSAPublicKey) -> str:
    """RFC 7638 JWK thumbprint: a `kid` that any holder of the public key can recompute."""
    jwk = json.loads(RSAAlgorithm.to_jwk(public_key))
    canonical = json.dumps({k: jwk[k] for k in ("e", "kty", "n")}, separators=(",", ":"), sort_keys=True)
    return base64.urlsafe_b64encode(hashlib.sha256(canonical.encode()).digest()).rstrip(b"=").decode()


class KeySet:
    """Every key that verifies access tokens; the newest private key signs.

    Rotation without logging anyone out: add the new private key after the old one (it signs from the
    next start), keep the old one's public key for one access-token lifetime, then drop it.
    """

    def __init__(self, private_keys: list[rsa.RSAPrivateKey], public_keys: list[rsa.RSAPublicKey] = ()) -> None:
        if not private_keys:
            raise ValueError("at least one private key is needed to sign")
        self.signing_key = private_keys[-1]
        self.signing_kid = thumbprint(self.signing_key.public_key())
        self.verify_keys: dict[str, rsa.RSAPublicKey] = {}
        for key in [*public_keys, *(k.public_key() for k in private_keys)]:
            self.verify_keys[thumbprint(key)] = key
        # Tokens these keys verified, with their claims and when they stop being valid, oldest first (an
        # OrderedDict, whose oldest is forgotten without a walk: server/cache.py): see verify_access_token.
        self.verified: OrderedDict[tuple[str, str, str], tuple[Claims, float]] = OrderedDict()

    @classmethod
    def from_pem(cls, private_pem: bytes, public_pem: bytes = b"") -> KeySet:
        privates = [serialization.load_pem_private_key(block, password=None) for block in _PEM_BLOCK.findall(private_pem)]
        publics = [serialization.load_pem_public_key(block) for block in _PEM_BLOCK.findall(public_pem)]
        for key in [*privates, *publics]:
            if not isinstance(key, (rsa.RSAPrivateKey, rsa.RSAPublicKey)) or key.key_size < 2048:
                raise ValueError("JWT keys must be RSA keys of at least 2048 bits")
        return cls(privates, publics)

    def jwks(self) -> dict:
        keys = []
        for kid, key in self.verify_keys.items():
            jwk = json.loads(RSAAlgorithm.to_jwk(key))
            keys.append({**jwk, "kid": kid, "alg": ALGORITHM, "use": "sig"})
        return {"keys": keys}


def generate_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def private_pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def local_keys(folder: Path) -> bytes:
    """The PEM keys under `folder` (oldest first), generating the first one if there is none.

    A lock file makes several processes starting at once agree on one key.
    """
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    with open(folder / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        pems = sorted(folder.glob("*.pem"))
        if not pems:
            path = folder / f"jwt-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.pem"
            path.touch(mode=0o600)
            path.write_bytes(private_pem(generate_key()))
            log.warning("generated a JWT signing key in %s; in production set JWT_PRIVATE_KEY_FILE", path)
            pems = [path]
        return b"".join(p.read_bytes() for p in pems)


def issue_access_token(keys: KeySet, *, user_id: int, role: str, session_id: int, issuer: str, audience: str,
                       ttl: int, now: float | None = None) -> str:
    now = int(time.time() if now is None else now)
    claims = {"sub": str(user_id), "role": role, "iss": issuer, "aud": audience, "iat": now, "exp": now + ttl,
              "jti": uuid.uuid4().hex, "sid": str(session_id)}
    return jwt.encode(claims, keys.signing_key, algorithm=ALGORITHM,
                      headers={"kid": keys.signing_kid, "typ": TOKEN_TYPE})


def verify_access_token(keys: KeySet, token: str, *, issuer: str, audience: str) -> Claims:
    """The token's claims, verified once per process: RSA verification costs about 30 µs, a look-up under 1.

    A token is remembered only once it passed every check, and only its exact text finds it again; a hit
    still checks the one claim that changes with time, `exp`. The memory belongs to the key set, so a
    reload that drops a key forgets what that key verified.
    """
    entry = (token, issuer, audience)
    known = keys.verified.get(entry)
    if known is not None:
        claims, valid_until = known
        if time.time() < valid_until:
            return claims
        keys.verified.pop(entry, None)
        raise TokenError("expired", expired=True)
    claims, expires = _verify_access_token(keys, token, issuer=issuer, audience=audience)
    if len(keys.verified) >= VERIFIED_TOKENS:
        keys.verified.popitem(last=False)  # the oldest
    keys.verified[entry] = claims, expires + LEEWAY  # pyjwt's test: expired once exp <= now - leeway
    return claims


def _verify_access_token(keys: KeySet, token: str, *, issuer: str, audience: str) -> tuple[Claims, int]:
    """Signature first (with the key named by `kid`, RS256 only), then type, times, issuer, audience."""
    try:
        header = jwt.get_unverified_header(token)
    except jwt.InvalidTokenError:
        raise TokenError("malformed") from None
    key = keys.verify_keys.get(header.get("kid")) if isinstance(header.get("kid"), str) else None
    if key is None:
        raise TokenError("unknown key")
    try:
        # pyjwt checks the signature before any claim, so an expired forgery is invalid, not expired.
        claims = jwt.decode(token, key, algorithms=[ALGORITHM], audience=audience, issuer=issuer, leeway=LEEWAY,
                            options={"require": REQUIRED_CLAIMS, "verify_signature": True})
    except jwt.ExpiredSignatureError:
        raise TokenError("expired", expired=True) from None
    except jwt.InvalidTokenError:
        raise TokenError("invalid") from None
    if str(header.get("typ", "")).lower() not in (TOKEN_TYPE, "application/" + TOKEN_TYPE):
        raise TokenError("not an access token")
    sub, sid, role = claims["sub"], claims["sid"], claims["role"]
    if not (isinstance(sub, str) and sub.isdigit() and isinstance(sid, str) and sid.isdigit() and role in ROLES):
        raise TokenError("bad claims")
    return Claims(int(sub), role, int(sid)), claims["exp"]


def new_refresh_token() -> str:
    """256 random bits, base64url: guessing is hopeless, so a fast hash is enough to store it."""
    return secrets.token_urlsafe(32)


def refresh_token_hash(token: str) -> bytes | None:
    """SHA-256 of a well-formed refresh token, or None for anything of the wrong format."""
    if not isinstance(token, str) or not _REFRESH.fullmatch(token):
        return None
    return hashlib.sha256(token.encode()).digest()


def load_keyset(private_pem: str | None, private_file: str | None, public_file: str | None,
                var_dir: Path) -> KeySet:
    """Keys from JWT_PRIVATE_KEY or JWT_PRIVATE_KEY_FILE; without either, keys kept under var/keys."""
    if private_pem:
        privates = private_pem.encode()
    elif private_file:
        privates = Path(private_file).read_bytes()
    else:
        privates = local_keys(var_dir / "keys")
    publics = Path(public_file).read_bytes() if public_file else b""
    return KeySet.from_pem(privates, publics)
