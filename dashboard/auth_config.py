"""The sign-in configuration: the ``[auth]`` section of Streamlit's secrets, read so that it fails closed.

Streamlit itself treats a secrets file that does not parse like a missing one
(``st.secrets.load_if_toml_exists()`` returns False and the server starts), so an ``[auth]``
section with a typo used to switch sign-in off. Here every secrets source Streamlit would
read must parse, and an ``[auth]`` section must be complete; otherwise the dashboard refuses
to start (``audits dashboard``) or to draw anything (``dashboard/app.py``), with the parse
error and the fix.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from audits.errors import AuditError

# What Streamlit's st.login needs (its docs: "Use authentication"): the section's own keys,
# and per provider (flat in [auth], or one table [auth.<name>] each) the OIDC client keys.
SECTION_KEYS = ("redirect_uri", "cookie_secret")
PROVIDER_KEYS = ("client_id", "client_secret", "server_metadata_url")
# Tables of [auth] (and of a provider's table) that are Streamlit options, not providers:
# client_kwargs = { prompt = "login" } is passed to the provider's authorize request.
OPTION_TABLES = ("client_kwargs",)


class SignInConfigError(AuditError):
    """The secrets do not parse, or their ``[auth]`` section is incomplete: sign-in cannot be decided."""


def _refuse(problem: str, fix: str) -> SignInConfigError:
    return SignInConfigError(problem + " The dashboard refuses to start rather than serve pages without sign-in.", fix=fix)


def _read_toml(path: Path) -> dict[str, Any] | None:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:  # Streamlit's default list names two files; usually one exists
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise _refuse(f"The secrets file {path} cannot be read ({exc}).", "Make it a readable UTF-8 TOML file, or remove it.") from exc
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise _refuse(
            f"The secrets file {path} does not parse: {exc}.",
            f"Correct the TOML syntax there (check with: python -c \"import tomllib; tomllib.load(open('{path}', 'rb'))\").",
        ) from exc


def _read_folder(path: Path) -> dict[str, Any]:
    """A Kubernetes-style secrets folder, as Streamlit reads it: one subfolder per secret, one file per key."""
    secrets: dict[str, Any] = {}
    for sub in sorted(path.iterdir()):
        if not sub.is_dir():
            raise _refuse(
                f"The secrets folder {path} holds {sub.name}, which is not a folder.", "Put every secret in a subfolder of its own, as Streamlit requires."
            )
        values = {f.name: f.read_text(encoding="utf-8").strip() for f in sorted(sub.iterdir()) if f.is_file()}
        secrets[sub.name] = next(iter(values.values())) if len(values) == 1 else values
    return secrets


def read_secrets(paths: Sequence[str | Path]) -> tuple[dict[str, Any], bool]:
    """Every secrets source in ``paths`` merged as Streamlit merges them (later ones win), and whether any exists.

    Raises
    ------
    SignInConfigError
        When a source exists but does not parse or cannot be read.
    """
    merged: dict[str, Any] = {}
    found = False
    for raw in paths:
        path = Path(raw)
        if str(path).endswith(".toml"):
            content = _read_toml(path)
        elif path.is_dir():
            content = _read_folder(path)
        else:
            raise _refuse(f"The secrets location {path} is neither a .toml file nor a folder.", "Fix the secrets.files setting in .streamlit/config.toml.")
        if content is not None:
            found = True
            merged.update(content)
    return merged, found


def _plain(value: Any) -> Any:
    return {str(k): _plain(v) for k, v in value.items()} if isinstance(value, Mapping) else value


def validate_auth(section: Any) -> dict[str, Any]:
    """The ``[auth]`` section as a plain dict, checked to hold what signing in needs.

    Raises
    ------
    SignInConfigError
        When it is not a table, or lacks a key that ``st.login`` would need.
    """
    if not isinstance(section, Mapping):
        raise _refuse("The secrets' `auth` entry is not a table.", "Write it as an [auth] section (see docs/dashboard.md, Access and deployment).")
    auth = _plain(section)
    missing = [k for k in SECTION_KEYS if not auth.get(k)]
    named = provider_tables(auth)
    if not named or any(k in auth for k in PROVIDER_KEYS):  # the default provider, written flat in [auth]
        missing += [k for k in PROVIDER_KEYS if not auth.get(k)]
    for name, table in named.items():
        missing += [f"{name}.{k}" for k in PROVIDER_KEYS if not table.get(k)]
    if missing:
        raise _refuse(
            f"The [auth] section lacks {', '.join(missing)}, so nobody could sign in.",
            "Add them (redirect_uri, cookie_secret, and client_id, client_secret, server_metadata_url in [auth] or in each [auth.<provider>]).",
        )
    return auth


def provider_tables(section: Mapping[str, Any]) -> dict[str, dict]:
    """The ``[auth.<provider>]`` tables of an ``[auth]`` section (``client_kwargs`` is an option, not a provider)."""
    return {name: table for name, table in section.items() if isinstance(table, Mapping) and name not in OPTION_TABLES}


def auth_from_files(paths: Sequence[str | Path]) -> dict[str, Any] | None:
    """The validated ``[auth]`` section of the secrets in ``paths``, or None when none has one."""
    secrets, _ = read_secrets(paths)
    return validate_auth(secrets["auth"]) if "auth" in secrets else None


def server_secrets_files(main_script: Path, flag_options: Mapping[str, str]) -> list[str]:
    """The secrets locations a ``streamlit run main_script`` started here with these flags will read.

    Streamlit's own configuration code decides (``~/.streamlit``, ``./.streamlit`` and the
    script's ``.streamlit`` folders, or the ``secrets.files`` option from config files,
    environment or flags), so the check cannot drift from what the server does.
    """
    from streamlit import config

    config._main_script_path = str(main_script)  # what `streamlit run` sets before reading its configuration
    config.get_config_options(force_reparse=True, options_from_flags=dict(flag_options))
    return [str(p) for p in config.get_option("secrets.files")]
