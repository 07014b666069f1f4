"""A fake Bot Framework identity service: real HTTP on 127.0.0.1, real RSA keys, real signed JWTs.

It stands where ``login.botframework.com`` stands for the Teams adapter's inbound
authentication (bot/teams/auth.py, bot/teams/signing_keys.py): ``metadata_url`` serves an
OpenID configuration whose ``jwks_uri`` serves the public keys, each with the
``endorsements`` Bot Framework publishes (the channel ids it vouches for). ``token()``
signs what the Bot Connector service sends with an activity (issuer
``https://api.botframework.com``, audience the bot's app id, a ``serviceurl`` claim),
signed RS256 by hand with ``cryptography`` so the fake shares no code with the validator.

Knobs for hostile tokens: any claim overridden or left out (``claims``/``drop``), a
``kid`` the key set does not hold, a signature by a key of the attacker's (``forged_token``),
``alg: none`` (``none_alg_token``), HS256 keyed with the published public key
(``hs256_public_key_token``). Knobs for the service: ``add_key``/``remove_key`` (rollover),
``down`` (503 on every path), ``jwks_uri`` (point the metadata elsewhere), ``body_override``
(serve any bytes at a path). Every request's path is recorded in ``requests``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from tests.fakes.net import FakeService, QuietHTTPServer

ISSUER = "https://api.botframework.com"
METADATA_PATH = "/v1/.well-known/openidconfiguration"
JWKS_PATH = "/v1/.well-known/keys"
DEFAULT_ENDORSEMENTS = ("msteams", "webchat", "emulator")


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _uint(n: int) -> str:
    return b64url(n.to_bytes((n.bit_length() + 7) // 8, "big"))


def _json_segment(obj: dict[str, Any]) -> str:
    return b64url(json.dumps(obj, separators=(",", ":")).encode())


@dataclass
class KeyPair:
    """One RSA key: the private half signs, the public half is published as a JWK."""

    kid: str
    private_key: rsa.RSAPrivateKey
    endorsements: tuple[str, ...] | None

    @classmethod
    def generate(cls, kid: str | None = None, endorsements: Iterable[str] | None = DEFAULT_ENDORSEMENTS,
                 bits: int = 2048) -> KeyPair:
        return cls(kid or uuid.uuid4().hex, rsa.generate_private_key(public_exponent=65537, key_size=bits),
                   tuple(endorsements) if endorsements is not None else None)

    def jwk(self) -> dict[str, Any]:
        numbers = self.private_key.public_key().public_numbers()
        jwk: dict[str, Any] = {"kty": "RSA", "use": "sig", "kid": self.kid, "x5t": self.kid,
                               "n": _uint(numbers.n), "e": _uint(numbers.e)}
        if self.endorsements is not None:
            jwk["endorsements"] = list(self.endorsements)
        return jwk

    def public_pem(self) -> bytes:
        return self.private_key.public_key().public_bytes(serialization.Encoding.PEM,
                                                          serialization.PublicFormat.SubjectPublicKeyInfo)

    def sign_rs256(self, signing_input: bytes) -> bytes:
        return self.private_key.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())


class FakeBotIdentity(FakeService):
    """One fake identity service. ``start()`` it (or use it as a context manager); one key to begin with."""

    def __init__(self, *, issuer: str = ISSUER, endorsements: Iterable[str] | None = DEFAULT_ENDORSEMENTS) -> None:
        self.issuer = issuer
        self.requests: list[str] = []
        self.down = False  # every path answers 503
        self.jwks_uri: str | None = None  # None: this server's own key set
        self.body_override: dict[str, bytes] = {}  # path -> raw body served with 200
        self._lock = threading.Lock()
        self._keys: list[KeyPair] = [KeyPair.generate(endorsements=endorsements)]
        self._server: QuietHTTPServer | None = None

    # -- the service -------------------------------------------------------------------------------------------
    def _handler(self) -> type[BaseHTTPRequestHandler]:
        return type("Handler", (_Handler,), {"fake": self})

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def metadata_url(self) -> str:
        return self.url + METADATA_PATH

    def count(self, path: str) -> int:
        with self._lock:
            return sum(1 for p in self.requests if p == path)

    def metadata(self) -> dict[str, Any]:
        return {"issuer": self.issuer, "authorization_endpoint": "https://invalid.botframework.com",
                "jwks_uri": self.jwks_uri or self.url + JWKS_PATH,
                "id_token_signing_alg_values_supported": ["RS256"],
                "token_endpoint_auth_methods_supported": ["private_key_jwt"]}

    def jwks(self) -> dict[str, Any]:
        with self._lock:
            return {"keys": [k.jwk() for k in self._keys]}

    # -- keys --------------------------------------------------------------------------------------------------
    @property
    def active(self) -> KeyPair:
        """The key new tokens are signed with: the newest published one."""
        with self._lock:
            return self._keys[-1]

    def add_key(self, kid: str | None = None, endorsements: Iterable[str] | None = DEFAULT_ENDORSEMENTS,
                bits: int = 2048) -> KeyPair:
        key = KeyPair.generate(kid, endorsements, bits)
        with self._lock:
            self._keys.append(key)
        return key

    def remove_key(self, kid: str) -> None:
        with self._lock:
            self._keys = [k for k in self._keys if k.kid != kid]

    # -- tokens ------------------------------------------------------------------------------------------------
    def claims(self, app_id: str, service_url: str | None, *, lifetime_s: int = 3600,
               issued_at: float | None = None, claims: dict[str, Any] | None = None,
               drop: Iterable[str] = ()) -> dict[str, Any]:
        """The claims of a Bot Connector token, as it sends them; ``claims`` overrides, ``drop`` removes."""
        now = int(time.time() if issued_at is None else issued_at)
        body: dict[str, Any] = {"serviceurl": service_url, "nbf": now - 5, "exp": now + lifetime_s,
                                "iss": self.issuer, "aud": app_id}
        body.update(claims or {})
        for name in drop:
            body.pop(name, None)
        return {k: v for k, v in body.items() if v is not None}

    def token(self, app_id: str, service_url: str | None = None, *, key: KeyPair | None = None,
              kid: str | None = None, header: dict[str, Any] | None = None, **claim_knobs: Any) -> str:
        """A token signed RS256 by ``key`` (the active one); ``kid`` names another key in its header."""
        key = key or self.active
        head = {"alg": "RS256", "kid": kid or key.kid, "x5t": kid or key.kid, "typ": "JWT", **(header or {})}
        head = {k: v for k, v in head.items() if v is not None}  # a None in ``header`` leaves that field out
        signing_input = f"{_json_segment(head)}.{_json_segment(self.claims(app_id, service_url, **claim_knobs))}"
        return f"{signing_input}.{b64url(key.sign_rs256(signing_input.encode()))}"

    def forged_token(self, app_id: str, service_url: str | None = None, **claim_knobs: Any) -> str:
        """Signed by a key of the attacker's under the published key's kid."""
        attacker = KeyPair.generate(self.active.kid)
        return self.token(app_id, service_url, key=attacker, **claim_knobs)

    def none_alg_token(self, app_id: str, service_url: str | None = None, **claim_knobs: Any) -> str:
        head = {"alg": "none", "kid": self.active.kid, "typ": "JWT"}
        return f"{_json_segment(head)}.{_json_segment(self.claims(app_id, service_url, **claim_knobs))}."

    def hs256_public_key_token(self, app_id: str, service_url: str | None = None, **claim_knobs: Any) -> str:
        """HMAC-SHA256 keyed with the published public key's PEM: the classic algorithm confusion."""
        key = self.active
        head = {"alg": "HS256", "kid": key.kid, "typ": "JWT"}
        signing_input = f"{_json_segment(head)}.{_json_segment(self.claims(app_id, service_url, **claim_knobs))}"
        mac = hmac.new(key.public_pem(), signing_input.encode(), hashlib.sha256).digest()
        return f"{signing_input}.{b64url(mac)}"


class _Handler(BaseHTTPRequestHandler):
    fake: FakeBotIdentity
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # noqa: N802 - the http.server API
        fake = self.fake
        path = self.path.split("?", 1)[0]
        with fake._lock:
            fake.requests.append(path)
        if fake.down:
            return self._send(503, b'{"error":"temporarily_unavailable"}')
        if path in fake.body_override:
            return self._send(200, fake.body_override[path])
        if path == METADATA_PATH:
            return self._send(200, json.dumps(fake.metadata()).encode())
        if path == JWKS_PATH:
            return self._send(200, json.dumps(fake.jwks()).encode())
        self._send(404, b'{"error":"not_found"}')

    def _send(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet, as the other fakes
        pass
