"""The admin bearer token: from ``--admin-token-file`` (re-read when the file changes, e.g. a
rotated Secret) or ``NEWAPI_ADMIN_TOKEN``; compared in constant time."""

from __future__ import annotations

import hmac
import logging
import os
from collections.abc import Mapping

log = logging.getLogger("newapi_gateway.admin")

ENV = "NEWAPI_ADMIN_TOKEN"
MIN_LENGTH = 16


class AdminTokenError(ValueError):
    """No usable admin token; the message says where to put one."""


class AdminToken:
    """The current admin token. ``check`` is constant-time in the token's content."""

    def __init__(self, path: str | None = None, value: str | None = None) -> None:
        if path is None and not value:
            raise AdminTokenError(f"the admin API needs a token: give --admin-token-file FILE or set {ENV}")
        self.path = path
        self._token = value.strip().encode() if value else b""
        self._stamp: tuple[int, int, int] | None = None
        if path is not None:
            self._reload(initial=True)
        if len(self._token) < MIN_LENGTH:
            raise AdminTokenError(f"the admin token must be at least {MIN_LENGTH} characters "
                                  f"({'--admin-token-file ' + path if path else ENV})")

    def _reload(self, initial: bool = False) -> None:
        assert self.path is not None
        try:
            st = os.stat(self.path)
            stamp = (st.st_ino, st.st_size, st.st_mtime_ns)
            if stamp == self._stamp:
                return
            with open(self.path, "rb") as f:
                token = f.read().strip()
        except OSError as exc:
            if initial:
                raise AdminTokenError(f"cannot read the admin token file {self.path}: {exc.strerror}") from None
            log.warning("cannot re-read the admin token file %s (%s); keeping the current token", self.path,
                        exc.strerror)
            return
        if len(token) < MIN_LENGTH:
            if initial:
                self._token = token
                return
            log.error("the admin token file %s now holds fewer than %d characters; keeping the current token",
                      self.path, MIN_LENGTH)
            return
        if not initial and token != self._token:
            log.info("admin token reloaded from %s", self.path)
        self._token, self._stamp = token, stamp

    def check(self, authorization: str | None) -> bool:
        """True when the ``Authorization`` header carries the token as a Bearer credential."""
        if self.path is not None:
            self._reload()
        if not authorization:
            return False
        scheme, _, presented = authorization.partition(" ")
        if scheme.lower() != "bearer":
            return False
        return hmac.compare_digest(presented.strip().encode(), self._token)


def token_from(path: str | None, env: Mapping[str, str] | None = None) -> AdminToken:
    """``--admin-token-file`` wins over ``NEWAPI_ADMIN_TOKEN``."""
    environ = os.environ if env is None else env
    return AdminToken(path=path, value=None if path else environ.get(ENV))
