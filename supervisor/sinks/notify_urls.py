"""Notification URLs: Apprise URLs (https://github.com/caronc/apprise/wiki), the migration of
the webhook settings from before Apprise, and how a URL may be shown.

Apprise is imported here only when a URL is checked or used, so a supervisor without
notifications never loads it.
"""

from __future__ import annotations

import functools
import os
import re
import tempfile
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

# Plugins whose payload takes extra fields from `:key=value` in the URL: a JSON or form receiver
# gets the event's name and policy as fields of their own, not only inside the text.
_FIELD_SCHEMES = frozenset({"json", "jsons", "form", "forms", "xml", "xmls"})


def plugin(url: str) -> Any:
    import apprise

    _load_plugin_for(urlsplit(url).scheme.lower())
    asset = apprise.AppriseAsset(app_id="iti-worker-supervisor", app_desc="iti-worker-supervisor")
    return apprise.Apprise.instantiate(url, asset=asset, suppress_exceptions=True)


# `protocol = "json"`, `secure_protocol = ("mailtos", ...)`: how each plugin names its schemes.
_PROTOCOL = re.compile(r"^\s+(?:secure_)?protocol\s*=\s*(\([^)]*\)|\"[^\"]*\"|'[^']*')", re.M)
_loaded: set[str] = set()  # the plugin modules loaded so far


def _manager() -> Any:
    from apprise.manager_plugins import NotificationManager

    return NotificationManager()  # type: ignore[no-untyped-call]  # Apprise's singleton


@functools.cache
def _modules_by_scheme() -> dict[str, str]:
    """Each scheme, and the plugin module (a file or a package of Apprise's plugins
    directory) that declares it, read from their source without importing them."""
    manager = _manager()
    out: dict[str, str] = {}
    for entry in sorted(os.listdir(manager.module_path)):
        path = os.path.join(manager.module_path, entry)
        name = entry.removesuffix(".py")
        if name.startswith(("_", "base")) or not (entry.endswith(".py") or os.path.isdir(path)):
            continue
        files = (
            [path]
            if entry.endswith(".py")
            else [os.path.join(path, f) for f in os.listdir(path) if f.endswith(".py")]
        )
        for file in files:
            with open(file, encoding="utf-8", errors="replace") as f:
                for found in _PROTOCOL.findall(f.read()):
                    for scheme in re.findall(r"[\"']([^\"']+)[\"']", found):
                        out.setdefault(scheme.lower(), entry)
    return out


def _load_plugin_for(scheme: str) -> None:
    """Load into Apprise only the plugin of `scheme` (Apprise loads all of its plugins at
    its first URL otherwise: about 10 MB more in the daemon). An unknown scheme leaves it
    to Apprise."""
    manager = _manager()
    entry = _modules_by_scheme().get(scheme)
    if entry is None or entry in _loaded:
        return
    with tempfile.TemporaryDirectory(prefix="apprise-plugins-") as only:
        os.symlink(os.path.join(manager.module_path, entry), os.path.join(only, entry))
        manager.load_modules(path=only, name=manager.module_name_prefix)
    _loaded.add(entry)


def check(url: str) -> None:
    """ValueError, naming the URL by `where`, unless Apprise can send to it."""
    if "://" not in url:
        raise ValueError(f"{where(url)} is not a URL (scheme://...)")
    if plugin(url) is None:
        raise ValueError(
            f"Apprise does not recognise {where(url)}; see the services and their URLs at "
            "https://github.com/caronc/apprise/wiki"
        )


def where(url: str) -> str:
    """The URL as it may be logged: its scheme and host, never a path, query or password.
    When Apprise knows the URL, its privacy form is used, since some services (Telegram) put
    the token where the host would be."""
    known = None
    try:
        known = plugin(url) if "://" in url else None
    except Exception:  # noqa: BLE001 - showing a URL must never fail
        known = None
    shown = known.url(privacy=True) if known is not None else url
    parts = urlsplit(shown)
    host = parts.hostname or "?"
    if known is not None:
        host = parts.netloc.rsplit("@", 1)[-1] or "?"
    return f"{parts.scheme or '?'}://{host}/…"


def with_fields(url: str, fields: dict[str, str]) -> str:
    """The URL with `fields` added to the payload, for the plugins that take them."""
    parts = urlsplit(url)
    if parts.scheme not in _FIELD_SCHEMES:
        return url
    extra = "&".join(f":{quote(k, safe='')}={quote(v, safe='')}" for k, v in fields.items())
    query = f"{parts.query}&{extra}" if parts.query else extra
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))
