"""Who is looking at the dashboard: a login cookie when authentication is on.

The browser never keeps the API key. Logging in checks the key once
(``inferledger.auth.authenticate``) and sets a cookie holding the key's *id*, an
expiry and an HMAC over both with a secret made at server start (so a restart
logs everyone out, which is acceptable for a dashboard). Every request re-reads the
key file, so revoking a key ends its dashboard sessions at once. The cookie is
HttpOnly (scripts cannot read it), SameSite=Strict (no other site can make the
browser send it, which also stops cross-site form posts) and Secure when the page
came over HTTPS. Requests that carry the key themselves (``Authorization: Bearer``,
``X-API-Key``: scripts, curl) are accepted too.
"""
from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from inferledger.auth import ANONYMOUS, Principal, authenticate, list_keys, presented_key

COOKIE_NAME = "inferledger_dashboard"
COOKIE_PATH = "/dashboard"
LIFETIME_S = 8 * 3600
VIEWER_ROLES = ("auditor", "admin")


@dataclass(frozen=True)
class Refusal:
    """Why a request may not see a page: 401 sends the browser to the login form, 403 explains."""

    status: int
    message: str


class Sessions:
    """Issues and checks login cookies for one server process."""

    def __init__(self, data_dir: Path, required: bool, lifetime_s: int = LIFETIME_S):
        self.data_dir = Path(data_dir)
        self.required = required
        self.lifetime_s = lifetime_s
        self._secret = secrets.token_bytes(32)

    def login(self, key: str) -> tuple[Principal | None, str]:
        """The principal of ``key`` and the cookie value to set, or (None, why not)."""
        principal = authenticate(self.data_dir, key.strip()) if key.strip() else None
        if principal is None:
            return None, "That API key is not valid (unknown, revoked or mistyped)."
        refusal = _role_refusal(principal)
        if refusal is not None:
            return None, refusal.message
        expires = int(time.time()) + self.lifetime_s
        return principal, f"{principal.key_id}.{expires}.{self._sign(principal.key_id, expires)}"

    def viewer(self, cookies: Mapping[str, str], headers: Mapping[str, str]) -> Principal | Refusal:
        """The principal a request acts as, or why it may not see dashboard pages."""
        if not self.required:
            return ANONYMOUS
        key = presented_key(headers)
        if key is not None:
            principal = authenticate(self.data_dir, key)
            if principal is None:
                return Refusal(401, "The API key sent with the request is not valid.")
        else:
            principal = self._from_cookie(cookies.get(COOKIE_NAME, ""))
            if principal is None:
                return Refusal(401, "Log in with an auditor or admin API key.")
        return _role_refusal(principal) or principal

    def _from_cookie(self, value: str) -> Principal | None:
        key_id, _, rest = value.partition(".")
        expires_text, _, signature = rest.partition(".")
        if not (key_id and expires_text.isdigit() and signature):
            return None
        expires = int(expires_text)
        if expires < time.time() or not hmac.compare_digest(signature, self._sign(key_id, expires)):
            return None
        for key in list_keys(self.data_dir):  # re-read: a revoked key's session ends now
            if key.id == key_id and not key.revoked:
                return Principal(key.id, key.name, key.role, key.tenant)
        return None

    def _sign(self, key_id: str, expires: int) -> str:
        return hmac.new(self._secret, f"{key_id}.{expires}".encode(), hashlib.sha256).hexdigest()


def _role_refusal(principal: Principal) -> Refusal | None:
    if principal.role in VIEWER_ROLES:
        return None
    return Refusal(403, f"API key {principal.key_id} ({principal.name}) has role {principal.role!r}; "
                        "the dashboard needs an auditor or admin key.")


def unscoped_refusal(principal: Principal) -> Refusal | None:
    """Cost pages aggregate every tenant, so a key scoped to one tenant sees only decisions."""
    if principal.tenant is None:
        return None
    return Refusal(403, f"API key {principal.key_id} is scoped to tenant {principal.tenant!r}; cost pages "
                        "cover all tenants and need an unscoped key. The decision search shows that tenant's records.")


def safe_next(target: str | None) -> str:
    """Where to go after logging in: only a dashboard path on this site (no open redirect)."""
    if target and target.startswith(COOKIE_PATH) and not target.startswith("//") and "\\" not in target:
        return target
    return COOKIE_PATH
