# Copyright 2026 The glyffuser developers. Licensed under the Apache License, Version 2.0.
"""The Hub side of sharing: the token, the repo and branch, and errors that say what to fix.

The training script calls :func:`prepare_hub_repo` before the first step, so a bad token or an unreachable Hub
fails in seconds, not after hours of training. Needs only ``huggingface_hub`` and the standard library.
"""

from __future__ import annotations

import logging
import os
import re

logger = logging.getLogger(__name__)

_TOKEN_LIKE = re.compile(r"(?<![A-Za-z0-9])hf_[A-Za-z0-9]{30,}(?![A-Za-z0-9])")
_LOGIN_HINT = (
    "log in with `hf auth login` (older clients: `huggingface-cli login`), pass a token explicitly "
    "(`--hub_token` when training, `--token` for `glyffuser push`), or set HF_TOKEN"
)


class HubError(RuntimeError):
    """A Hub operation could not be done; the message says why and names the fix."""


class HubPushError(HubError):
    """A push failed at the Hub (token, network, server). The folder is complete; `retry_command` re-uploads it."""

    def __init__(self, reason: str, retry_command: str | None):
        self.reason = reason
        self.retry_command = retry_command
        message = reason
        if retry_command:
            message += f"\nThe local output is complete. Retry the upload with:\n    {retry_command}"
        super().__init__(message)


def resolve_token(token: str | None = None) -> str | None:
    """The token to use: explicit > `HF_TOKEN` > the cached login (`hf auth login`). Never stored by us."""
    if token:
        return token
    from huggingface_hub import get_token

    return get_token()


def _endpoint() -> str:
    from huggingface_hub import constants

    return constants.ENDPOINT.rstrip("/")


def _chain(err: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    while err is not None and err not in seen:
        seen.append(err)
        err = err.__cause__ or err.__context__
    return seen


def _is_connection_error(err: BaseException) -> bool:
    names = {cls.__name__ for cls in type(err).__mro__}
    return isinstance(err, (ConnectionError, TimeoutError)) or bool(
        names & {"ConnectError", "ConnectTimeout", "TransportError", "NetworkError", "TimeoutException",
                 "ConnectionError", "ProxyError", "gaierror"}  # fmt: skip
    )


def explain_hub_error(err: BaseException, action: str, repo_id: str) -> str:
    """One sentence on what went wrong with `action` on `repo_id`, and how to fix it."""
    from huggingface_hub.errors import HFValidationError, OfflineModeIsEnabled

    endpoint = _endpoint()
    chain = _chain(err)
    for e in chain:
        if isinstance(e, OfflineModeIsEnabled):
            return f"HF_HUB_OFFLINE is set, so nothing can be sent to the Hub: unset HF_HUB_OFFLINE to {action}."
        if isinstance(e, HFValidationError):
            return f"{repo_id!r} is not a valid repo id ({e}). Use 'name' or 'user-or-org/name'."
    for e in chain:
        response = getattr(e, "response", None)
        status = getattr(response, "status_code", None)
        if status is None:
            continue
        detail = getattr(e, "server_message", None) or str(e).splitlines()[0]
        if status == 401:
            return (
                f"The Hub at {endpoint} rejected the token (401 Unauthorized: invalid, expired or revoked; "
                f"{detail}). Create a write token at {endpoint}/settings/tokens, then {_LOGIN_HINT}."
            )
        if status == 403:
            return (
                f"The token is not allowed to {action} {repo_id} (403 Forbidden: {detail}). Use a token with "
                f"write access to that namespace ({endpoint}/settings/tokens), then {_LOGIN_HINT}."
            )
        if status == 404:
            return f"{repo_id} or its revision was not found on {endpoint} (404: {detail})."
        if status >= 500:
            return (
                f"The Hub at {endpoint} failed to {action} {repo_id} ({status}: {detail}); "
                "this is usually temporary."
            )
        return f"The Hub at {endpoint} refused to {action} {repo_id} ({status}: {detail})."
    if any(_is_connection_error(e) for e in chain):
        configured = os.environ.get("HF_ENDPOINT")
        where = f"HF_ENDPOINT={configured}" if configured else "HF_ENDPOINT is unset, i.e. https://huggingface.co"
        return (
            f"Could not reach the Hub at {endpoint} ({type(err).__name__}: {err}). Check the network connection "
            f"and HF_ENDPOINT ({where})."
        )
    return f"Could not {action} {repo_id}: {type(err).__name__}: {err}"


def check_no_token(text: str, token: str | None, where: str) -> None:
    """Refuse to publish `text` if it holds the token or anything that looks like a Hub token."""
    if token and token in text:
        raise HubError(f"Refusing to publish {where}: it contains the Hub token in use. Remove it and retry.")
    match = _TOKEN_LIKE.search(text)
    if match:
        raise HubError(
            f"Refusing to publish {where}: it contains a string that looks like a Hugging Face token "
            f"({match.group()[:5]}...). Remove it (tokens belong in HF_TOKEN or `hf auth login`) and retry."
        )


def prepare_hub_repo(
    repo_id: str, token: str | None = None, private: bool = False, revision: str | None = None
) -> str:
    """Check the token and create (or find) the repo and branch, before any training or saving.

    Returns the full repo id (`user/name` when `repo_id` had no namespace). Raises :class:`HubError` in
    seconds, with the fix in the message, for a missing/invalid/read-only token, a namespace the user
    can't write to, or an unreachable endpoint.
    """
    from huggingface_hub import HfApi

    token = resolve_token(token)
    if not token:
        raise HubError(f"No Hugging Face token found to push to {repo_id!r}: {_LOGIN_HINT}.")
    api = HfApi(token=token)
    try:
        me = api.whoami(token=token)
    except Exception as err:
        raise HubError(explain_hub_error(err, "check the token for", repo_id)) from err
    user = me.get("name")
    role = ((me.get("auth") or {}).get("accessToken") or {}).get("role")
    if role == "read":
        raise HubError(
            f"The token of {user!r} is read-only, so it cannot push {repo_id}. Create a token with write access at "
            f"{_endpoint()}/settings/tokens, then {_LOGIN_HINT}."
        )
    namespace = repo_id.split("/", 1)[0] if "/" in repo_id else user
    allowed = [user] + [o.get("name") for o in me.get("orgs") or []]
    if role == "write" and namespace not in allowed:  # fine-grained tokens: let the Hub decide
        raise HubError(
            f"{user!r} cannot create repos in the namespace {namespace!r} (theirs: {', '.join(map(str, allowed))}). "
            f"Push to '{user}/{repo_id.split('/')[-1]}' or use a token of a member of {namespace!r}."
        )
    try:
        full_id = api.create_repo(repo_id, token=token, private=private, exist_ok=True, repo_type="model").repo_id
        if revision and revision != "main" and not revision.startswith("refs/pr/"):
            api.create_branch(full_id, branch=revision, token=token, exist_ok=True)
    except Exception as err:
        raise HubError(explain_hub_error(err, "create", repo_id)) from err
    logger.info(f"Hub repo {full_id} is ready (user {user}{', branch ' + revision if revision else ''}).")
    return full_id
