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
`status`, `sample` and the notifications all go through it. The parser registers every password
it reads (whatever it holds: quotes, spaces, `;`, `@`, unicode), as written and in each spelling
text may quote it in, before it shows anything of the URL, so a password its patterns would end
early is still masked; an error shows a URL with everything up to its last `@` masked and never
names a piece that could be part of a password.
"""

from __future__ import annotations

import json
import re
import ssl
import threading
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, unquote_plus, urlsplit

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
    password: str | None = field(default=None, repr=False)  # a repr never shows it
    tls: dict[str, Any] = field(default_factory=dict)  # redis-py's ssl_* arguments

    @property
    def sentinel(self) -> bool:
        return self.scheme == "sentinel"

    @property
    def ssl(self) -> bool:
        return self.scheme == "rediss" or bool(self.tls)


# A ';' joins URLs only where another URL follows it: one inside a password stays in it.
_JOIN = re.compile(r";(?=\s*[A-Za-z][A-Za-z0-9+.\-]*://)")


def split(url: str) -> list[str]:
    """The URLs of a `;` list (Sentinel), each stripped; a `;` in a password splits nothing."""
    return [s for p in _JOIN.split(url) if (s := p.strip().strip(";").strip())]


def parse(url: str, tls_defaults: dict[str, object] | None = None) -> BrokerURL:
    """The URL as every command connects to it; ValueError saying what is wrong, with no piece
    of a password. Every password it finds is registered as a secret (masked by `redact`)."""
    parts = split(url)
    if not parts:
        raise ValueError("is empty")
    parsed = [_one(p) for p in parts]
    schemes = {p.scheme for p in parsed}
    if len(parsed) > 1 and schemes != {"sentinel"}:
        shown = ";".join(_shown(p) for p in parts)
        raise ValueError(f"only sentinel:// URLs may be joined with ';', got {shown!r}")
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


def _shown(url: str) -> str:
    """One URL as an error may show it: everything between `://` and its last `@` (where a
    password can be, whatever it holds) masked but the user name, then `redact`."""
    # A query password runs to the next option this parser knows ('&' and '@' may be in it).
    url = _SHOWN_QUERY_PASSWORD.sub(lambda m: f"{m.group(1)}{MASK}", url)
    head, sep, rest = url.partition("://")
    userinfo, at, address = rest.rpartition("@")
    if sep and at:
        user, colon, _ = userinfo.partition(":")
        rest = f"{user}:{MASK}@{address}" if colon else f"{MASK}@{address}"
        url = f"{head}{sep}{rest}"
    return redact(url)


_SHOWN_QUERY_PASSWORD = re.compile(r"([?&]password=).*?(?=&(?:password|db|ssl_[a-z_]+)=|$)", re.S)


def _register(url: str) -> None:
    """Every password `url` may hold, before anything of it is shown: the user-info's (up to
    its last `@`, whatever it holds) and each `password=` of the query, as written and
    decoded."""
    outside = _SHOWN_QUERY_PASSWORD.sub("", url)  # an '@' of a query password is not its end
    userinfo = outside.partition("://")[2].rpartition("@")[0]
    if ":" in userinfo:
        register_password(userinfo.partition(":")[2])
    for found in _RAW_QUERY_PASSWORD.finditer(url.partition("?")[2]):
        register_password(found.group(1), unquote_plus(found.group(1)))


def _one(url: str) -> BrokerURL:
    _register(url)
    shown = _shown(url)
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        # Its text quotes the address, password and all: say what it is about, not that.
        why = (
            "an IPv6 address needs its ']'"
            if "IPv6" in str(exc)
            else ("a character of its address is not allowed (in a password, percent-encode it)")
        )
        raise ValueError(f"{shown!r} is not a URL: {why}") from None
    scheme = parts.scheme.lower()
    if parts.fragment or "#" in url:
        raise ValueError(f"'#' ends a URL's address: write it %23 in a password, in {shown!r}")
    after = _SHOWN_QUERY_PASSWORD.sub("", url).partition("://")[2][len(parts.netloc) :]
    if "@" in after:
        # A '/' or '?' ended the address before the '@': what follows is no host, no database
        # and no option, and may be a piece of a password, so none of it is named.
        raise ValueError(
            "an '@' after the address: in a password write '/' as %2F and '?' as %3F "
            f"(and '@' as %40 in an option), in {shown!r}"
        )
    register_password(parts.password)  # as urllib reads it (it drops tabs and newlines)
    if scheme not in SCHEMES:
        raise ValueError(
            f"must be a redis://, rediss://, unix:// or sentinel:// URL, got {shown!r}"
        )
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    unknown = sorted(set(query) - _KNOWN_QUERY)
    if unknown and "password" in query:
        # What follows a '&' of the password is read as an option: it is not named.
        raise ValueError(
            f"an unknown option in {shown!r}; in a password of the query write '&' as %26"
        )
    if unknown:
        raise ValueError(f"unknown option {unknown[0]!r} in {shown!r}")
    password = query.get("password") or (unquote(parts.password) if parts.password else None)
    register_password(password)
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
_RAW_QUERY_PASSWORD = re.compile(r"(?:^|&)password=([^&]*)")  # a '#' too: it is refused, masked
ANYWHERE = 4  # a secret this long is masked wherever it appears; a shorter one would mask
# ordinary words, so it is masked where a password stands: `scheme://user:HERE@`, `password=HERE`


def register_secret(value: str) -> None:
    """A value that came from a secret: masked wherever it appears (a short one, where a
    password stands in a URL)."""
    if value:
        with _secrets_lock:
            _secrets.add(value)


def register_password(*values: str | None) -> None:
    """A password, as it is and in each spelling a URL may hold it (as written, unquoted,
    percent-encoded): masked in every output, whatever characters it holds."""
    for value in values:
        if value:
            for plain in (value, unquote(value)):
                for spelling in _spellings(plain):
                    register_secret(spelling)


def _spellings(value: str) -> set[str]:
    """`value` as text may quote it: as it is, percent-encoded, in a repr, in JSON."""
    backslashed = value.replace("\\", "\\\\")
    return {
        value,
        quote(value, safe=""),
        quote(value),
        repr(value)[1:-1],
        backslashed.replace("'", "\\'"),
        backslashed.replace('"', '\\"'),
        json.dumps(value)[1:-1],
        json.dumps(value, ensure_ascii=False)[1:-1],
    }


def register_secret_value(value: str) -> None:
    """A value from the environment (`${NAME}` of a policy) is masked wherever it would be
    shown; of a whole URL only its passwords are secret (the host and database are what status
    and errors must say)."""
    if "://" not in value:
        register_secret(value)
        register_secret(quote(value, safe=""))
        return
    for part in split(value):
        try:
            parts = urlsplit(part)
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
    # The registered secrets first: a password holding a quote, a space or ';' ends the
    # patterns below early, and one they do not know (a literal) is found by its value.
    with _secrets_lock:
        found = sorted((s for s in _secrets if s in text), key=len, reverse=True)
    for secret in found:
        if len(secret) >= ANYWHERE:
            text = text.replace(secret, MASK)
        else:
            for place in _places(secret):
                text = place.sub(lambda m: f"{m.group(1)}{MASK}", text)
    text = _USERINFO.sub(lambda m: f"{m.group(1)}{MASK}@", text)
    text = _QUERY_PASSWORD.sub(lambda m: f"{m.group(1)}{MASK}", text)
    return text


def _places(secret: str) -> tuple[re.Pattern[str], ...]:
    """Where a short secret stands as a password: after `user:` of a URL, or `password=`."""
    s = re.escape(secret)
    return (
        re.compile(rf"(://[^:/\s]*:){s}(?=@)"),
        re.compile(rf"([?&;]password=){s}(?=$|[&;#\s\"'])", re.I),
    )
