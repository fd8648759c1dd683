"""The broker URL, parsed once the way every command uses it, and the one redaction of secrets.

Celery's spellings are accepted: `redis://[user:password@]host[:port][/db]`, `rediss://` with
`ssl_cert_reqs` (`required`, `optional`, `none`, or `CERT_REQUIRED`, `CERT_OPTIONAL`,
`CERT_NONE`), `ssl_ca_certs`, `ssl_certfile`, `ssl_keyfile` in the query, a `password` in the
query (as redis-py honours it), `unix:///path?db=N`, and Sentinel lists
(`sentinel://[:password@]host:port[/db];sentinel://...`). `check` and `run` parse with the same
function, so a URL `check` accepts never makes `run` crash; a problem is said with every password
masked.

`redact(text)` masks every password of every such URL inside any text (user-info and query,
each URL of a `;` list) and every value that came from a `${NAME}` secret: the log, the audit,
`status`, `sample` and the notifications all go through it.
"""

from __future__ import annotations

import re
import ssl
import threading
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlsplit

SCHEMES = ("redis", "rediss", "unix", "sentinel")
MASK = "***"

_CERT_REQS = {
    "required": ssl.CERT_REQUIRED,
    "cert_required": ssl.CERT_REQUIRED,
    "optional": ssl.CERT_OPTIONAL,
    "cert_optional": ssl.CERT_OPTIONAL,
    "none": ssl.CERT_NONE,
    "cert_none": ssl.CERT_NONE,
}
_TLS_KEYS = ("ssl_cert_reqs", "ssl_ca_certs", "ssl_certfile", "ssl_keyfile", "ssl_check_hostname")
_KNOWN_QUERY = frozenset({"password", "db", *_TLS_KEYS})
_HOST = re.compile(r"[A-Za-z0-9_.\-]+|\[[0-9A-Fa-f:.]+\]")


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int


@dataclass(frozen=True)
class BrokerURL:
    """A broker URL as the supervisor connects to it."""

    scheme: str  # redis, rediss, unix, sentinel
    endpoints: tuple[Endpoint, ...] = ()  # one for redis(s); every sentinel of a list
    path: str | None = None  # unix socket
    db: int = 0
    username: str | None = None
    password: str | None = None
    tls: dict[str, Any] = field(default_factory=dict)  # redis-py's ssl_* arguments

    @property
    def sentinel(self) -> bool:
        return self.scheme == "sentinel"

    @property
    def ssl(self) -> bool:
        return self.scheme == "rediss" or bool(self.tls)


def parse(url: str, tls_defaults: dict[str, object] | None = None) -> BrokerURL:
    """The URL as every command connects to it; ValueError saying what is wrong (no secret)."""
    parts = [p.strip() for p in url.split(";") if p.strip()]
    if not parts:
        raise ValueError("is empty")
    parsed = [_one(p) for p in parts]
    schemes = {p.scheme for p in parsed}
    if len(parsed) > 1 and schemes != {"sentinel"}:
        raise ValueError(f"only sentinel:// URLs may be joined with ';', got {redact(url)!r}")
    first = parsed[0]
    if first.sentinel:
        dbs = {p.db for p in parsed}
        if len(dbs) > 1:
            raise ValueError(f"the sentinel URLs name different databases: {sorted(dbs)}")
        endpoints = tuple(e for p in parsed for e in p.endpoints)
        password = next((p.password for p in parsed if p.password), None)
        return BrokerURL("sentinel", endpoints, db=first.db, password=password, tls=first.tls)
    tls = dict(first.tls)
    for key, value in (tls_defaults or {}).items():
        tls.setdefault(key, value)
    if tls and first.scheme != "rediss":
        raise ValueError(f"ssl_* options need a rediss:// URL, got {redact(url)!r}")
    return BrokerURL(first.scheme, first.endpoints, first.path, first.db, first.username,
                     first.password, tls)  # fmt: skip


def _one(url: str) -> BrokerURL:
    shown = redact(url)
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise ValueError(f"{shown!r} is not a URL: {exc}") from None
    scheme = parts.scheme.lower()
    if parts.fragment or "#" in url:
        raise ValueError(f"'#' ends a URL's address: write it %23 in a password, in {shown!r}")
    if scheme not in SCHEMES:
        raise ValueError(
            f"must be a redis://, rediss://, unix:// or sentinel:// URL, got {shown!r}"
        )
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    unknown = sorted(set(query) - _KNOWN_QUERY)
    if unknown:
        raise ValueError(f"unknown option {unknown[0]!r} in {shown!r}")
    password = query.get("password") or (unquote(parts.password) if parts.password else None)
    username = unquote(parts.username) if parts.username else None
    tls = _tls(query, shown)
    db_text = query.get("db")
    if scheme == "unix":
        if not parts.path:
            raise ValueError(f"no socket path in {shown!r}")
        return BrokerURL("unix", path=parts.path, db=_db(db_text or "0", shown),
                         username=username, password=password)  # fmt: skip
    host_port = parts.netloc.rsplit("@", 1)[-1]
    host, _, port_text = (
        host_port.rpartition(":") if not host_port.endswith("]") else (host_port, "", "")
    )
    if not _:
        host, port_text = host_port, ""
    if not host or not _HOST.fullmatch(host):
        raise ValueError(f"host {host!r} is not a host name or address, in {shown!r}")
    port = 26379 if scheme == "sentinel" else 6379
    if port_text:
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise ValueError(f"port {port_text!r} is not a port number (1-65535), in {shown!r}")
        port = int(port_text)
    path = parts.path.strip("/")
    if db_text is None:
        db_text = path or "0"
    elif path:
        raise ValueError(f"the database is given twice (path and ?db=), in {shown!r}")
    return BrokerURL(scheme, (Endpoint(host.strip("[]"), port),), None, _db(db_text, shown),
                     username, password, tls)  # fmt: skip


def _db(text: str, shown: str) -> int:
    if not text.isdigit():
        raise ValueError(f"database {text!r} is not a number, in {shown!r}")
    return int(text)


def _tls(query: dict[str, str], shown: str) -> dict[str, object]:
    out: dict[str, object] = {}
    reqs = query.get("ssl_cert_reqs")
    if reqs is not None:
        key = reqs.strip().lower()
        if key not in _CERT_REQS:
            raise ValueError(
                f"ssl_cert_reqs={reqs!r}: use required, optional or none "
                f"(or CERT_REQUIRED, CERT_OPTIONAL, CERT_NONE), in {shown!r}"
            )
        out["ssl_cert_reqs"] = _CERT_REQS[key]
    for name in ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile"):
        if query.get(name):
            out[name] = query[name]
    if "ssl_check_hostname" in query:
        out["ssl_check_hostname"] = query["ssl_check_hostname"].lower() in ("1", "true", "yes")
    return out


def for_kombu(url: BrokerURL) -> str:
    """The URL as kombu's Redis transports read it: no query (TLS goes in broker_use_ssl, a
    query password in the user-info), one `sentinel://` per sentinel."""
    auth = ""
    if url.password is not None or url.username is not None:
        auth = f"{quote(url.username or '', safe='')}:{quote(url.password or '', safe='')}@"
    if url.scheme == "unix":
        return f"redis+socket://{auth}{url.path}?virtual_host={url.db}"
    hosts = [f"{_bracket(e.host)}:{e.port}" for e in url.endpoints]
    return ";".join(f"{url.scheme}://{auth}{h}/{url.db}" for h in hosts)


def _bracket(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def cert_reqs(text: str) -> int:
    """A policy's `ssl_cert_reqs` in any of Celery's spellings; ValueError otherwise."""
    key = text.strip().lower()
    if key not in _CERT_REQS:
        raise ValueError(
            f"{text!r}: use required, optional or none (or CERT_REQUIRED, CERT_OPTIONAL, CERT_NONE)"
        )
    return _CERT_REQS[key]


# -- redaction ---------------------------------------------------------------------------------

_secrets: set[str] = set()
_secrets_lock = threading.Lock()
# The password runs to the last '@' of the URL (an unquoted '@' or '#' in it is still masked).
# Quotes end a URL too: the text may be JSON or a repr.
_USERINFO = re.compile(r"(\b[a-z][a-z0-9+.\-]*://[^:/@\s;\"']*:)([^\s;\"']*)@", re.I)
_QUERY_PASSWORD = re.compile(r"([?&;](?:password|pass|pwd)=)([^&\s;#\"']*)", re.I)


def register_secret(value: str) -> None:
    """A value that came from a secret (a `${NAME}` of a policy): masked wherever it appears."""
    if len(value) >= 4:  # a shorter one would mask ordinary words
        with _secrets_lock:
            _secrets.add(value)


def register_secret_value(value: str) -> None:
    """A value from the environment (`${NAME}` of a policy) is masked wherever it would be
    shown; of a whole URL only its passwords are secret (the host and database are what status
    and errors must say)."""
    if "://" not in value:
        register_secret(value)
        register_secret(quote(value, safe=""))
        return
    for part in value.split(";"):
        try:
            parts = urlsplit(part.strip())
            query = parse_qsl(parts.query)
        except ValueError:
            continue  # not a URL: its parse says so, the password masked by its form
        for found in (parts.password, *(v for k, v in query if k == "password")):
            if found:
                register_secret(found)
                register_secret(unquote(found))


def redact_tree(value: Any) -> Any:
    """`value` (a record: dicts, lists, strings) with `redact` applied to every string in it."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: redact_tree(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact_tree(v) for v in value]
    return value


def redact(text: str) -> str:
    """`text` with every password of every broker URL in it, and every secret value, masked."""
    text = _USERINFO.sub(lambda m: f"{m.group(1)}{MASK}@", text)
    text = _QUERY_PASSWORD.sub(lambda m: f"{m.group(1)}{MASK}", text)
    with _secrets_lock:
        found = sorted((s for s in _secrets if s in text), key=len, reverse=True)
    for secret in found:
        text = text.replace(secret, MASK)
    return text
