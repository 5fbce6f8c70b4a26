"""Who may use the app: optional sign-in, and the owner's controls (rebuild, status) when it is on.

People search their own photos, so whoever puts the app on the internet decides who gets in:

- no sign-in (the default): anyone who can reach the page searches; rebuild and status stay open,
  as on a laptop;
- ``--auth USER:PASSWORD[,...]``: Gradio's own login page in front of everything (the page, the API,
  files). Owners are the users named by ``--owners``, or every listed user without it;
- ``--hf-sign-in`` on a Hugging Face Space (``hf_oauth: true`` in the Space's README front matter): a
  "Sign in with Hugging Face" button; every event needs a signed-in user, one of ``--users`` when
  given (``*``: anyone with an account). Owners: ``--owners``, else the Space's owner
  (``SPACE_AUTHOR_NAME``, which Spaces sets).

With sign-in on, rebuilding the index and the status panel (model, gallery, skipped files) are for
owners only. Who is asking is read from Gradio's request context (the ``gr.Request`` of the event
being handled), so the handlers need no extra argument: :func:`protect` wraps every event of the page
but those that only show the status (page load, timer), and ``status_markdown`` asks :func:`owner_now`.
"""

from __future__ import annotations

import functools
import importlib.util
import os
from dataclasses import dataclass, field
from typing import Any

import gradio as gr

OWNER_ONLY = ("rebuild_index",)  # api names of the events only owners may run
SHOWN_TO_ALL = ("load", "tick")  # page-load and timer events: they only show status (filtered by owner_now)
OWNER_ONLY_STATUS = "What is loaded is shown to the app's owner only."
SIGN_IN_NEEDED = "Sign in to search (the button at the top of the page)."
NOT_ALLOWED = "This account may not search here; ask the app's owner."
OWNER_NEEDED = "Only the app's owner can do that."


@dataclass(frozen=True)
class Access:
    """The sign-in settings: ``sign_in`` None (open), "password" (Gradio auth) or "huggingface"."""

    sign_in: str | None = None
    owners: frozenset[str] = field(default_factory=frozenset)
    users: frozenset[str] | None = None  # who may search besides owners; None: anyone signed in
    passwords: tuple[tuple[str, str], ...] = ()

    @property
    def on(self) -> bool:
        return self.sign_in is not None

    def may_search(self, user: str | None) -> bool:
        if not self.on:
            return True
        if user is None:
            return False
        return self.users is None or user in self.users or user in self.owners

    def is_owner(self, user: str | None) -> bool:
        return not self.on or (user is not None and user in self.owners)

    def launch_kwargs(self) -> dict[str, Any]:
        """What ``Blocks.launch`` needs: Gradio's login page for password sign-in."""
        return {"auth": list(self.passwords)} if self.sign_in == "password" else {}


def parse_users(text: str | None) -> frozenset[str]:
    return frozenset(u.strip() for u in (text or "").split(",") if u.strip())


def make_access(auth: str | None = None, owners: str | None = None, hf_sign_in: bool = False,
                users: str | None = None) -> Access:
    """The settings from the command line (see the module doc). Raises ValueError naming the mistake."""
    if auth and hf_sign_in:
        raise ValueError("choose one sign-in: --auth (a password) or --hf-sign-in (Hugging Face accounts)")
    if auth:
        passwords = []
        for pair in auth.split(","):
            user, sep, password = pair.strip().partition(":")
            if not sep or not user or not password:
                raise ValueError("--auth takes USER:PASSWORD pairs separated by commas, e.g. alice:s3cret")
            passwords.append((user, password))
        named = parse_users(owners)
        listed = {u for u, _ in passwords}
        if named - listed:
            raise ValueError(f"--owners names users without a password in --auth: {sorted(named - listed)}")
        return Access("password", frozenset(named or listed), None, tuple(passwords))
    if hf_sign_in:
        missing = [m for m in ("authlib", "itsdangerous") if importlib.util.find_spec(m) is None]
        if missing:
            raise ValueError(f"--hf-sign-in needs Gradio's OAuth extras ({', '.join(missing)} missing): "
                             "pip install 'gradio[oauth]'")
        named = parse_users(owners) or parse_users(os.environ.get("SPACE_AUTHOR_NAME"))
        if not named:
            raise ValueError("--hf-sign-in needs an owner: --owners USER (on a Space, SPACE_AUTHOR_NAME is used)")
        allowed = parse_users(users)
        return Access("huggingface", named, None if "*" in allowed else allowed)
    if owners or users:
        raise ValueError("--owners and --users only apply with a sign-in: add --auth or --hf-sign-in")
    return Access()


def request_user(request: Any) -> str | None:
    """The signed-in user of a ``gr.Request``: Gradio's login, else a Hugging Face sign-in (its
    ``preferred_username``, from the session cookie Gradio's OAuth sets); None when nobody is."""
    if request is None:
        return None
    if getattr(request, "username", None):
        return request.username
    raw = getattr(request, "request", None)  # the Starlette request, with the session when OAuth is on
    try:
        session = raw.session if raw is not None else None
    except (AssertionError, AttributeError):  # no SessionMiddleware: no OAuth
        return None
    info = (session or {}).get("oauth_info") or {}
    expires = info.get("expires_at")
    if expires is not None:
        import time

        if expires < time.time():
            return None
    return (info.get("userinfo") or {}).get("preferred_username")


def current_user() -> str | None:
    """The user of the Gradio event being handled, or None (outside an event, or nobody signed in)."""
    try:
        from gradio.context import LocalContext

        return request_user(LocalContext.request.get(None))
    except (ImportError, AttributeError, LookupError):  # pragma: no cover
        return None


def owner_now(access: Access | None) -> bool:
    """Whether the event being handled may see owner-only things."""
    return access is None or access.is_owner(current_user())


def protect(demo: gr.Blocks, access: Access) -> None:
    """Wrap every event of ``demo``: with sign-in on, refuse (``gr.Error``) users who may not search, and
    non-owners on ``OWNER_ONLY`` events. Call after the page is built."""
    if not access.on:
        return
    for block_fn in demo.fns.values():
        if block_fn.fn is None or any(event in SHOWN_TO_ALL for _, event in block_fn.targets):
            continue
        block_fn.fn = _guarded(block_fn.fn, access, owner_only=block_fn.api_name in OWNER_ONLY)


def _guarded(fn, access: Access, owner_only: bool):
    @functools.wraps(fn)  # Gradio reads the wrapped signature (special arguments, input count)
    def guarded(*args, **kwargs):
        user = current_user()
        if owner_only and not access.is_owner(user):
            raise gr.Error(OWNER_NEEDED if user else SIGN_IN_NEEDED, print_exception=False)  # refused on purpose: no traceback
        if not access.may_search(user):
            raise gr.Error(NOT_ALLOWED if user else SIGN_IN_NEEDED, print_exception=False)
        return fn(*args, **kwargs)

    return guarded
