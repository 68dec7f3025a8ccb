"""Forged, tampered and misused access tokens: every one is a 401 with the contract's code, never a 5xx."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from server.guards import KEYS
from server.tokens import generate_key, thumbprint

def now() -> int:
    return int(time.time())


def b64(data) -> str:
    raw = data if isinstance(data, bytes) else json.dumps(data).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def claims(user_id: int, **changes) -> dict:
    base = {"sub": str(user_id), "role": "user", "iss": "blog-api", "aud": "blog-api", "iat": now(), "exp": now() + 600,
            "jti": "j1", "sid": "1"}
    base.update(changes)
    return {k: v for k, v in base.items() if v is not ...}


def sign(keys, payload: dict, **header) -> str:
    headers = {"kid": keys.signing_kid, "typ": "at+jwt", **header}
    return jwt.encode(payload, keys.signing_key, algorithm="RS256", headers=headers)


def unsigned(alg: str, kid: str, payload: dict) -> str:
    return f"{b64({'alg': alg, 'typ': 'at+jwt', 'kid': kid})}.{b64(payload)}."


def hs256_with_public_key(keys, payload: dict) -> str:
    public_pem = keys.signing_key.public_key().public_bytes(serialization.Encoding.PEM,
                                                           serialization.PublicFormat.SubjectPublicKeyInfo)
    signing_input = f"{b64({'alg': 'HS256', 'typ': 'at+jwt', 'kid': keys.signing_kid})}.{b64(payload)}"
    signature = hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(signature)}"


FOREIGN = generate_key()


def foreign(payload: dict, kid: str, **header) -> str:
    return jwt.encode(payload, FOREIGN, algorithm="RS256", headers={"kid": kid, "typ": "at+jwt", **header})


def tampered(keys, user_id: int) -> str:
    header, _, signature = sign(keys, claims(user_id)).split(".")
    return f"{header}.{b64(claims(user_id, role='admin'))}.{signature}"


def expired_forgery(keys, user_id: int) -> str:
    token = sign(keys, claims(user_id, iat=now() - 7200, exp=now() - 3600))
    return token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")


# (name, build(keys, user_id) -> Authorization header value, expected code)
ATTACKS = [
    *[(f"alg {alg}", lambda k, u, alg=alg: "Bearer " + unsigned(alg, k.signing_kid, claims(u)), "INVALID_TOKEN")
      for alg in ("none", "None", "NONE", "nOnE")],
    ("HS256 with the public key as secret", lambda k, u: "Bearer " + hs256_with_public_key(k, claims(u)),
     "INVALID_TOKEN"),
    ("foreign key with our kid", lambda k, u: "Bearer " + foreign(claims(u), k.signing_kid), "INVALID_TOKEN"),
    ("unknown kid", lambda k, u: "Bearer " + foreign(claims(u), thumbprint(FOREIGN.public_key())), "INVALID_TOKEN"),
    ("no kid", lambda k, u: "Bearer " + jwt.encode(claims(u), k.signing_key, algorithm="RS256",
                                                   headers={"typ": "at+jwt"}), "INVALID_TOKEN"),
    ("jku pointing elsewhere", lambda k, u: "Bearer " + foreign(
        claims(u), thumbprint(FOREIGN.public_key()), jku="http://127.0.0.1:1/jwks.json"), "INVALID_TOKEN"),
    ("x5u pointing elsewhere", lambda k, u: "Bearer " + foreign(
        claims(u), k.signing_kid, x5u="http://127.0.0.1:1/cert.pem"), "INVALID_TOKEN"),
    ("tampered role admin", lambda k, u: "Bearer " + tampered(k, u), "INVALID_TOKEN"),
    ("expired", lambda k, u: "Bearer " + sign(k, claims(u, iat=now() - 7200, exp=now() - 3600)), "TOKEN_EXPIRED"),
    ("expired beyond leeway", lambda k, u: "Bearer " + sign(k, claims(u, iat=now() - 1000, exp=now() - 31)),
     "TOKEN_EXPIRED"),
    ("expired with a bad signature", lambda k, u: "Bearer " + expired_forgery(k, u), "INVALID_TOKEN"),
    ("not yet valid", lambda k, u: "Bearer " + sign(k, claims(u, nbf=now() + 3600)), "INVALID_TOKEN"),
    ("issued in the future", lambda k, u: "Bearer " + sign(k, claims(u, iat=now() + 3600, exp=now() + 7200)),
     "INVALID_TOKEN"),
    ("wrong iss", lambda k, u: "Bearer " + sign(k, claims(u, iss="someone-else")), "INVALID_TOKEN"),
    ("wrong aud", lambda k, u: "Bearer " + sign(k, claims(u, aud="another-api")), "INVALID_TOKEN"),
    *[(f"missing {name}", lambda k, u, name=name: "Bearer " + sign(k, claims(u, **{name: ...})), "INVALID_TOKEN")
      for name in ("sub", "role", "iss", "aud", "iat", "exp", "jti", "sid")],
    ("typ JWT instead of at+jwt", lambda k, u: "Bearer " + sign(k, claims(u), typ="JWT"), "INVALID_TOKEN"),
    ("unknown role", lambda k, u: "Bearer " + sign(k, claims(u, role="superuser")), "INVALID_TOKEN"),
    ("sub not a user id", lambda k, u: "Bearer " + sign(k, claims(u, sub="admin")), "INVALID_TOKEN"),
    ("numeric sub", lambda k, u: "Bearer " + sign(k, claims(u, sub=u)), "INVALID_TOKEN"),
    ("garbage", lambda k, u: "Bearer garbage", "INVALID_TOKEN"),
    ("three dots", lambda k, u: "Bearer a.b.c", "INVALID_TOKEN"),
    ("empty bearer", lambda k, u: "Bearer ", "UNAUTHORIZED"),
    ("bearer only", lambda k, u: "Bearer", "UNAUTHORIZED"),
    ("basic scheme", lambda k, u: "Basic YWxpY2U6cGFzcw==", "UNAUTHORIZED"),
    ("token without scheme", lambda k, u: sign(k, claims(u)), "UNAUTHORIZED"),
]


@pytest.mark.parametrize(("build", "code"), [a[1:] for a in ATTACKS], ids=[a[0] for a in ATTACKS])
@pytest.mark.parametrize("path", ["/api/users/me", "/api/users/1"])
async def test_attack_is_refused_with_401(client, alice, build, code, path):
    keys = client.server.app[KEYS]
    response = await client.get(path, headers={"Authorization": build(keys, alice.id)})
    assert response.status == 401, await response.text()
    error = (await response.json())["error"]
    assert error["code"] == code
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


async def test_a_correctly_signed_token_within_leeway_is_accepted(client, alice):
    keys = client.server.app[KEYS]
    token = sign(keys, claims(alice.id, iat=now() - 1000, exp=now() - 10))
    response = await client.get("/api/users/me", headers={"Authorization": f"Bearer {token}"})
    assert response.status == 200


async def test_bearer_scheme_is_case_insensitive(client, alice):
    response = await client.get("/api/users/me", headers={"Authorization": f"bearer {alice.access}"})
    assert response.status == 200


async def test_a_rotated_key_keeps_old_tokens_valid(aiohttp_client, make_config, db, tmp_path):
    """Two keys in the file: the newest signs, tokens of the older one still verify, the JWKS lists both."""
    from server.app import create_app
    from server.tokens import KeySet, issue_access_token, private_pem

    old, new = generate_key(), generate_key()
    path = tmp_path / "keys.pem"
    path.write_bytes(private_pem(old) + private_pem(new))
    client = await aiohttp_client(create_app(make_config(jwt_private_key_file=str(path))))
    user = (await (await client.post("/api/users", json={"email": "k@example.com", "username": "keyed",
                                                         "password": "correct horse"})).json())["data"]
    old_token = issue_access_token(KeySet([old]), user_id=user["id"], role="user", session_id=1, issuer="blog-api",
                                   audience="blog-api", ttl=60)
    assert (await client.get("/api/users/me", headers={"Authorization": f"Bearer {old_token}"})).status == 200
    login = await client.post("/api/auth/login", json={"email": "k@example.com", "password": "correct horse"})
    access = (await login.json())["data"]["accessToken"]
    assert jwt.get_unverified_header(access)["kid"] == thumbprint(new.public_key())
    kids = {k["kid"] for k in (await (await client.get("/.well-known/jwks.json")).json())["keys"]}
    assert kids == {thumbprint(old.public_key()), thumbprint(new.public_key())}


# Verified tokens are remembered per key set (server/tokens.py): what must still hold.

def _verify(keys, token: str):
    from server.tokens import verify_access_token
    return verify_access_token(keys, token, issuer="blog-api", audience="blog-api")


def test_a_remembered_token_still_expires(monkeypatch):
    from server.tokens import KeySet, TokenError
    keys = KeySet([generate_key()])
    token = sign(keys, claims(7, exp=now() + 5))
    assert _verify(keys, token).user_id == 7
    assert _verify(keys, token).user_id == 7  # remembered
    later = time.time() + 5 + 31  # past exp and the 30 s leeway
    monkeypatch.setattr(time, "time", lambda: later)
    with pytest.raises(TokenError) as caught:
        _verify(keys, token)
    assert caught.value.expired
    assert not keys.verified


def test_only_a_token_that_passed_is_remembered_and_only_its_exact_text_finds_it():
    from server.tokens import KeySet, TokenError
    keys = KeySet([generate_key()])
    good = sign(keys, claims(7))
    _verify(keys, good)
    header, payload, signature = good.split(".")
    for bad in (tampered(keys, 7), f"{header}.{b64(claims(7, role='admin'))}.{signature}", good + "x", good[:-2]):
        with pytest.raises(TokenError):
            _verify(keys, bad)
    assert [entry[0] for entry in keys.verified] == [good]
    with pytest.raises(TokenError):  # another audience is another entry, verified on its own
        from server.tokens import verify_access_token
        verify_access_token(keys, good, issuer="blog-api", audience="another-api")


def test_a_key_set_without_the_key_forgets_its_tokens():
    """A reload builds a new key set: a token of a dropped key is refused even if it was remembered."""
    from server.tokens import KeySet, TokenError
    old, new = generate_key(), generate_key()
    both = KeySet([old, new])
    token = jwt.encode(claims(7), old, algorithm="RS256", headers={"kid": thumbprint(old.public_key()), "typ": "at+jwt"})
    assert _verify(both, token).user_id == 7
    with pytest.raises(TokenError):
        _verify(KeySet([new]), token)


def test_the_memory_is_bounded(monkeypatch):
    from server import tokens
    monkeypatch.setattr(tokens, "VERIFIED_TOKENS", 3)
    keys = tokens.KeySet([generate_key()])
    made = [sign(keys, claims(user)) for user in range(1, 6)]
    for token in made:
        _verify(keys, token)
    assert [entry[0] for entry in keys.verified] == made[-3:]
    assert _verify(keys, made[0]).user_id == 1  # forgotten, so verified again
