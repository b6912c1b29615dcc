"""API keys from the environment, a ``.env`` file or Colab secrets, and scrubbing them from text.

The key is looked up, in order, in:

1. the environment variable named by ``teacher.api_key_env`` (default ``OPENAI_API_KEY``);
2. a ``.env`` file (the current directory or a parent, or an explicit path), read with
   python-dotenv's ``dotenv_values`` so the key is *not* exported into ``os.environ`` (and so not
   inherited by subprocesses or printed by ``%env``);
3. Colab's secrets panel (``google.colab.userdata.get(name)``), when running on Colab (the
   secret's "Notebook access" toggle must be on: the error says so when Colab refuses);
4. Kaggle's secrets (``kaggle_secrets.UserSecretsClient().get_secret(name)``), on Kaggle.

Errors name the variable, never the value. Every key read is registered, so that :func:`scrub`
(used on every error message the teacher records or raises) and the logging filter installed by
:func:`install_log_scrubber` replace it with ``***``.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from pathlib import Path

_KNOWN_SECRETS: set[str] = set()
_LOCK = threading.Lock()
# "Authorization: Bearer <anything>" echoed by a proxy: hide the token even if we never saw it.
_BEARER_RE = re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=\-]{8,}")
# Credentials inside a URL: "scheme://user:password@host" and "?api_key=..." style parameters.
_URL_USERINFO_RE = re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://)[^/\s@?#]+@")
_SECRET_PARAM_NAME = r"[a-z0-9_\-]*(?:key|token|secret|passw(?:or)?d|pwd|auth|signature|sig|credential)[a-z0-9_\-]*"
_URL_SECRET_PARAM_RE = re.compile(rf"(?i)([?&;](?:{_SECRET_PARAM_NAME})=)[^&#\s\"']+")
#: What an environment variable name may look like (POSIX portable names, upper case).
ENV_NAME_RE = re.compile(r"[A-Z_][A-Z0-9_]{0,63}")
MASK = "***"


class MissingAPIKey(RuntimeError):
    """No API key was found; the message names the variable and where it was looked for."""


def register_secret(value: str | None) -> None:
    """Remember a secret value so that :func:`scrub` hides it from any text."""
    if value and len(value) >= 4:
        with _LOCK:
            _KNOWN_SECRETS.add(value)


def scrub(text: object) -> str:
    """Return ``str(text)`` with every registered secret and any bearer token replaced by ``***``."""
    out = str(text)
    with _LOCK:
        secrets = sorted(_KNOWN_SECRETS, key=len, reverse=True)
    for secret in secrets:
        if secret in out:
            out = out.replace(secret, MASK)
    out = _URL_USERINFO_RE.sub(lambda m: m.group(1) + MASK + "@", out)
    out = _URL_SECRET_PARAM_RE.sub(lambda m: m.group(1) + MASK, out)
    return _BEARER_RE.sub(lambda m: m.group(1) + MASK, out)


def redact_url(url: str | None) -> str | None:
    """Return ``url`` without its credentials: user-info and every query value become ``***``.

    ``https://user:pw@host/v1?api_key=k&x=1`` -> ``https://***@host/v1?api_key=***&x=***``; None
    and URLs without credentials come back unchanged.
    """
    if not url:
        return url
    from urllib.parse import urlsplit, urlunsplit

    try:
        parts = urlsplit(str(url))
    except ValueError:
        return MASK  # unparseable: show nothing of it
    netloc = parts.netloc
    if "@" not in netloc and not parts.query and not parts.fragment:
        return url
    if "@" in netloc:
        netloc = MASK + "@" + netloc.rsplit("@", 1)[1]
    query = "&".join(f"{item.split('=', 1)[0]}={MASK}" if "=" in item else MASK for item in parts.query.split("&") if item)
    return urlunsplit((parts.scheme, netloc, parts.path, query, MASK if parts.fragment else ""))


def url_problem(url: str, key: str, query_setting: str | None = None) -> str | None:
    """Return why ``url`` cannot be an API base URL (not http(s), no host, credentials in it), or None.

    The message names ``key`` and shows the URL only with its credentials masked. A query string
    is refused: it may carry a key (and the URL is saved in ``config.json`` and shown in logs);
    ``query_setting`` names the setting that takes the other query parameters, when there is one.
    """
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(str(url).strip())
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        return f"{key} is not a valid URL: expected http(s)://host[:port]/path"
    shown = redact_url(str(url).strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        # Text without "://" may be a key pasted in the wrong place: it is not echoed.
        got = f"got {shown!r}" if "://" in str(url) else "the value given is not shown"
        return f"{key} must be an http:// or https:// URL with a host, e.g. http://localhost:8000/v1 ({got})"
    if parts.username is not None or parts.password is not None:
        return (f"{key} must not hold credentials (user-info before '@'; got {shown!r}): put the key in the "
                "environment variable named by the api_key_env setting instead")
    if parts.query or parts.fragment:
        elsewhere = f", other query parameters (e.g. api-version) in {query_setting}" if query_setting else ""
        return (f"{key} must not hold a query string or fragment (got {shown!r}): OpenAI-compatible base URLs "
                "end with the API path (e.g. .../v1), and the URL is saved in config.json and shown in logs; "
                f"the key goes in the environment variable named by api_key_env{elsewhere}")
    return None


def query_problem(query: object, key: str) -> str | None:
    """Return why ``query`` cannot be sent as query parameters with every request (``key``), or None.

    A parameter named like a credential is refused (the settings are saved in ``config.json``);
    values are never echoed, names only when they look like names.
    """
    if not isinstance(query, dict):
        return f"{key} must be a mapping of parameter names to values, e.g. {{api-version: '2024-10-21'}}"
    for name, value in query.items():
        shown = repr(name) if isinstance(name, str) and re.fullmatch(r"[A-Za-z0-9_.\-]{1,40}", name) else "a parameter"
        if not isinstance(name, str) or not name.strip():
            return f"{key}: parameter names must be non-empty text"
        if re.fullmatch(_SECRET_PARAM_NAME, name, flags=re.IGNORECASE):
            return (f"{key} must not hold credentials ({shown}; its value is not shown): put the key in the "
                    "environment variable named by the api_key_env setting instead")
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            return f"{key}: the value of {shown} must be text; quote it (e.g. {{api-version: '2024-10-21'}})"
    return None


def env_name_problem(name: object, key: str) -> str | None:
    """Return why ``name`` is not a valid environment variable name for ``key``, or None.

    The value itself is never echoed: someone may have pasted the key instead of its variable's name.
    """
    if isinstance(name, str) and ENV_NAME_RE.fullmatch(name):
        return None
    return (f"{key} must be the NAME of an environment variable holding the key (upper-case letters, digits "
            "and '_', at most 64 characters, e.g. OPENAI_API_KEY), not the key itself; the value given is not shown")


def _from_dotenv(name: str, dotenv_path: str | os.PathLike | None) -> str | None:
    try:
        from dotenv import dotenv_values, find_dotenv
    except ImportError:  # pragma: no cover - python-dotenv is a requirement
        return None
    path = str(dotenv_path) if dotenv_path is not None else find_dotenv(usecwd=True)
    if not path or not Path(path).is_file():
        return None
    value = dotenv_values(path).get(name)
    return value or None


def _from_colab(name: str, notes: list[str]) -> str | None:
    """Return the Colab secret ``name``, or None (adding to ``notes`` why, when Colab says so)."""
    try:
        from google.colab import userdata  # type: ignore[import-not-found]
    except ImportError:
        return None
    try:
        value = userdata.get(name)
    except Exception as exc:  # noqa: BLE001 - SecretNotFoundError, NotebookAccessError, TimeoutException
        kind = type(exc).__name__
        if "Access" in kind:
            notes.append(
                f"Colab has a secret named {name} but this notebook may not read it: in the secrets panel "
                "(key icon, left bar) turn on the 'Notebook access' toggle next to it, then re-run the cell"
            )
        elif "NotFound" in kind:
            notes.append(f"Colab's secrets panel (key icon) has no secret named {name}")
        else:
            notes.append(f"Colab's secrets panel could not be read ({kind})")
        return None
    return value or None


def _from_kaggle(name: str, notes: list[str]) -> str | None:
    """Return the Kaggle secret ``name`` (Add-ons -> Secrets), or None (adding to ``notes`` why)."""
    try:
        from kaggle_secrets import UserSecretsClient  # type: ignore[import-not-found]
    except ImportError:
        return None
    try:
        value = UserSecretsClient().get_secret(name)
    except Exception as exc:  # noqa: BLE001 - the client raises plain exceptions for a missing / unattached secret
        notes.append(
            f"Kaggle has no secret {name} attached to this notebook ({type(exc).__name__}): Add-ons -> Secrets, "
            f"add {name} and tick it for this notebook"
        )
        return None
    return value or None


def get_api_key(name: str = "OPENAI_API_KEY", dotenv_path: str | os.PathLike | None = None) -> str:
    """Return the API key held by the variable ``name`` (environment, .env, Colab secrets, Kaggle secrets).

    Raises :class:`MissingAPIKey` naming ``name`` (never a value) and, on Colab / Kaggle, what
    their secrets store said (e.g. the Colab secret exists but its notebook access is off).
    """
    problem = env_name_problem(name, "api_key_env")
    if problem:
        raise MissingAPIKey(problem)
    notes: list[str] = []
    sources = (lambda: os.environ.get(name), lambda: _from_dotenv(name, dotenv_path),
               lambda: _from_colab(name, notes), lambda: _from_kaggle(name, notes))
    for source in sources:
        value = source()
        if value and value.strip():
            value = value.strip()
            register_secret(value)
            return value
    raise MissingAPIKey(
        f"no API key found in the variable {name}: set it in the environment (export {name}=...), "
        f"in a .env file next to the notebooks ({name}=...), in Colab's secrets panel (key icon, name {name}, "
        f"'Notebook access' on) or in Kaggle's Add-ons -> Secrets (label {name}); see docs/teacher.md"
        + "".join(f". {note}" for note in notes)
    )


class ScrubFilter(logging.Filter):
    """A logging filter that replaces registered secrets in every record's message."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = scrub(message)
        if clean != message:
            record.msg, record.args = clean, None
        return True


_FACTORY_INSTALLED = False


def quiet_http_request_logs() -> None:
    """Lower httpx's per-request INFO lines to warnings (only where nobody chose a level for its loggers).

    One line per HTTP request would bury the progress bars (hundreds of teacher or evaluation
    requests); warnings and errors still show.
    """
    for name in ("httpx", "httpx2"):
        if logging.getLogger(name).level == logging.NOTSET:
            logging.getLogger(name).setLevel(logging.WARNING)


def install_log_scrubber() -> None:
    """Make every log record created from now on carry scrubbed text (idempotent).

    A record factory, rather than a handler filter, so that handlers added later (notebooks,
    pytest) are covered too.
    """
    global _FACTORY_INSTALLED
    with _LOCK:
        if _FACTORY_INSTALLED:
            return
        previous = logging.getLogRecordFactory()

        def factory(*args, **kwargs):
            # Registered keys, and credentials inside URLs even when no key was read.
            record = previous(*args, **kwargs)
            try:
                message = record.getMessage()
            except Exception:  # a malformed log call: leave it to logging's own error path
                return record
            clean = scrub(message)
            if clean != message:
                record.msg, record.args = clean, None
            return record

        logging.setLogRecordFactory(factory)
        _FACTORY_INSTALLED = True


__all__ = [
    "ENV_NAME_RE",
    "MASK",
    "MissingAPIKey",
    "ScrubFilter",
    "env_name_problem",
    "get_api_key",
    "install_log_scrubber",
    "redact_url",
    "register_secret",
    "scrub",
    "url_problem",
]
