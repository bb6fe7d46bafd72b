"""Secret detection and redaction for the environment record: which names, files and values look secret.

The environment document and patch (``environment.py``) must never carry a credential, so everything
taken from the command line, the environment or git passes through here first: ``redact_argv`` blanks
secret-looking options and ``KEY=VALUE`` arguments, ``strip_url_credentials`` drops URL credentials, and a
``Scrubber`` remembers every secret value seen so it is replaced wherever it shows up. The rules are
described in ``environment.py``'s module docstring (the spec's field table).
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable
from typing import Any

__all__ = [
    "REDACTED",
    "Scrubber",
    "environment_secrets",
    "is_secret_file",
    "redact_argv",
    "secret_name",
    "strip_url_credentials",
]

REDACTED = "[REDACTED]"

_SECRET_VALUE_MIN = 8

_STRONG = ("passw", "secret", "credential", "cookie", "apikey", "passphrase", "privatekey", "accesskey",
           "authtoken", "accesstoken", "refreshtoken", "bearer", "pwd", "authorization")
_LAST = frozenset({"key", "token", "auth", "session", "sessionid", "pass", "pw", "sig", "signature", "jwt", "otp"})
_ENV_SECRET = re.compile(r"key|token|secret|passw|pwd|auth|credential|cookie|session|private|signature", re.IGNORECASE)
_ENV_NOT_SECRET = frozenset({"DESKTOP_SESSION", "SESSION_MANAGER", "SSH_AUTH_SOCK", "GPG_AGENT_INFO", "KEYTIMEOUT",
                             "PWD", "OLDPWD"})

_TOKEN_FORMATS = re.compile(
    r"-----BEGIN [A-Z ]*PRIVATE KEY(?: BLOCK)?-----"
    r"|\b(?:gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{30,}|glpat-[A-Za-z0-9_-]{20,}"
    r"|sk-[A-Za-z0-9_-]{20,}|hf_[A-Za-z0-9]{30,}|xox[abeprs]-[A-Za-z0-9-]{10,}|(?:AKIA|ASIA)[0-9A-Z]{16}"
    r"|AIza[0-9A-Za-z_-]{35}|npm_[A-Za-z0-9]{36}|pypi-[A-Za-z0-9_-]{50,})"
    r"|\b(?:Bearer|Basic)\s+(?=[A-Za-z0-9._~+/=-]*[0-9+/=])[A-Za-z0-9._~+/=-]{16,}"
)
_TOKEN_FORMATS_B = re.compile(_TOKEN_FORMATS.pattern.encode())
_URL_USERINFO = re.compile(r"\b([A-Za-z][A-Za-z0-9+.-]*://)([^/?#@\s\"'<>]*)@")
_INLINE_KEY = re.compile(r"""(?P<key>[A-Za-z_][A-Za-z0-9_.-]*)["']?\s*[=:]\s*""")
_INLINE_VALUE = re.compile(r"""\[REDACTED\]|(?P<q>["'])(?P<qv>[^"']*)(?P=q)|(?P<v>[^\s"',;&}\]\)]+)""")
_SSH_SCHEMES = frozenset({"ssh", "git+ssh", "ssh+git", "sftp", "scp"})

_SECRET_FILE_NAMES = (".env", ".env.*", "*.env", ".envrc", ".netrc", "_netrc", ".pgpass", ".npmrc", ".pypirc",
                      ".git-credentials", ".htpasswd", "*.pem", "*.key", "*.p12", "*.pfx", "*.jks", "*.keystore",
                      "*.kdbx", "*.gpg", "*.asc", "id_rsa*", "id_dsa*", "id_ecdsa*", "id_ed25519*", "*secret*",
                      "*credential*", "*passw*", "*apikey*", "*api_key*", "*api-key*", "token", "token.*",
                      "*_token", "*_token.*", "*-token", "*-token.*", "*.token", "kubeconfig")
_SECRET_DIRS = frozenset({".ssh", ".aws", ".gnupg", ".kube", ".docker", "secrets", ".secrets"})


def _words(name: str) -> list[str]:
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name)
    return [w for w in re.split(r"[^A-Za-z0-9]+", spaced.lower()) if w]


def secret_name(name: str) -> bool:
    """Does an option, key or variable name look like it holds a secret? (rule in the module docstring)"""
    words = _words(name)
    if not words:
        return False
    joined = "".join(words)
    return any(s in joined for s in _STRONG) or words[-1] in _LAST


def is_secret_file(path: str) -> bool:
    parts = path.replace("\\", "/").split("/")
    if any(p.lower() in _SECRET_DIRS for p in parts[:-1]):
        return True
    base = parts[-1].lower()
    return any(fnmatch.fnmatchcase(base, pat) for pat in _SECRET_FILE_NAMES)


def strip_url_credentials(url: str) -> str:
    """Drop credentials from every URL in ``url``: a password always, a user name unless ssh-like."""

    def repl(m: re.Match[str]) -> str:
        scheme, userinfo = m.group(1), m.group(2)
        if ":" not in userinfo and scheme[:-3].lower() in _SSH_SCHEMES:
            return m.group(0)
        return scheme

    return _URL_USERINFO.sub(repl, url)


def _inline_pairs(text: str) -> str:
    """``api_key=xyz``, ``"token": "xyz"``, ``?sig=xyz`` inside a longer string: the value is redacted."""
    out: list[str] = []
    pos = 0
    for m in _INLINE_KEY.finditer(text):
        if m.start() < pos or not secret_name(m.group("key")):
            continue
        v = _INLINE_VALUE.match(text, m.end())
        if v is None or v.group(0) == REDACTED:
            continue
        a, b = (v.start("qv"), v.end("qv")) if v.group("q") else (v.start("v"), v.end("v"))
        if text.startswith("//", a):  # scheme://host: not a value
            continue
        out.append(text[pos:a] + REDACTED)
        pos = b
    out.append(text[pos:])
    return "".join(out)


class Scrubber:
    """Replaces secret-looking text; remembers every secret value it has seen so it is scrubbed everywhere."""

    def __init__(self, known: Iterable[str] = ()) -> None:
        self.known: set[str] = set()
        for k in known:
            self.add(k)

    def add(self, value: str | None) -> None:
        if value and len(value) >= 6 and value != REDACTED:
            self.known.add(value)

    def add_url_secrets(self, text: str) -> None:
        for m in _URL_USERINFO.finditer(text):
            user, _, password = m.group(2).partition(":")
            self.add(password)
            if len(user) >= 16:  # a long user name is a token (https://<token>@github.com/...)
                self.add(user)

    def text(self, s: str) -> str:
        self.add_url_secrets(s)
        s = strip_url_credentials(s)
        s = _inline_pairs(s)
        s = _TOKEN_FORMATS.sub(REDACTED, s)
        for k in sorted(self.known, key=len, reverse=True):
            if k in s:
                s = s.replace(k, REDACTED)
        return s

    def document(self, obj: Any) -> Any:
        if isinstance(obj, str):
            return self.text(obj)
        if isinstance(obj, dict):
            return {k: self.document(v) for k, v in obj.items()}
        if isinstance(obj, list):
            return [self.document(v) for v in obj]
        return obj

    def bytes_secret(self, data: bytes) -> bool:
        """Does ``data`` contain a known secret value or a known token format?"""
        if _TOKEN_FORMATS_B.search(data):
            return True
        return any(k.encode("utf-8", "surrogateescape") in data for k in self.known)


def _path_like(value: str) -> bool:
    return value.startswith(("/", "~", "./", "../")) or bool(re.match(r"^[A-Za-z]:[\\/]", value))


def environment_secrets(environ: dict[str, str]) -> Scrubber:
    """Values of secret-named variables and URL passwords in any variable: scrubbed if they show up anywhere."""
    scrub = Scrubber()
    for name, value in environ.items():
        if "://" in value:
            scrub.add_url_secrets(value)
        if name in _ENV_NOT_SECRET or name.startswith("XDG_") or not _ENV_SECRET.search(name):
            continue
        v = value.strip()
        if len(v) >= _SECRET_VALUE_MIN and not _path_like(v) and not v.isdigit():
            scrub.add(v)
    return scrub


def redact_argv(argv: list[str], scrub: Scrubber | None = None) -> list[str]:
    """``argv`` with the values of secret-looking options and ``KEY=VALUE`` arguments replaced by [REDACTED].

    Every removed value is added to ``scrub`` (if given), so it is also scrubbed from the rest of the record.
    """
    scrub = scrub if scrub is not None else Scrubber()
    out: list[str] = []
    redact_next = False
    for i, arg in enumerate(argv):
        arg = str(arg)
        if redact_next:
            redact_next = False
            scrub.add(arg)
            out.append(REDACTED)
            continue
        if i > 0 and _is_short_password(arg):
            # ``-p SECRET`` / ``-pSECRET``, the mysql/psql password option (spec §16): a port redacted by
            # mistake costs nothing, a password kept costs everything.
            if arg == "-p":
                nxt = argv[i + 1] if i + 1 < len(argv) else None
                redact_next = nxt is not None and not str(nxt).startswith("-")
                out.append(arg)
            else:
                scrub.add(arg[2:].lstrip("="))
                out.append(f"-p{REDACTED}")
            continue
        if i > 0 and arg.startswith("-") and len(arg) > 2 and not arg[1:2].isdigit() and arg != "--":
            name, eq, value = arg.partition("=")
            if secret_name(name.lstrip("-")):
                if eq:
                    scrub.add(value)
                    out.append(f"{name}={REDACTED}")
                else:
                    nxt = argv[i + 1] if i + 1 < len(argv) else None
                    redact_next = nxt is not None and not str(nxt).startswith("--")
                    out.append(arg)
                continue
            if eq:
                out.append(f"{name}={_redact_value(value, scrub)}")
                continue
            out.append(arg)
            continue
        out.append(_redact_value(arg, scrub))
    return [scrub.text(a) for a in out]


def _is_short_password(arg: str) -> bool:
    """``-p`` alone or with its value attached (``-pSECRET``, ``-p=SECRET``); never a long option."""
    if arg == "-p":
        return True
    if not arg.startswith("-p") or len(arg) <= 2 or arg[2] == "-":
        return False
    # ``-password X``, ``-pwd=X``: a long option with one dash, redacted by its name instead
    return arg[1:].partition("=")[0].lower() not in _ONE_DASH_PASSWORD_NAMES


_ONE_DASH_PASSWORD_NAMES = frozenset({"pass", "passwd", "password", "passphrase", "pw", "pwd"})


_KEY_VALUE = re.compile(r"^(?P<key>[+~]{0,2}[A-Za-z_][A-Za-z0-9_.\-/]*)=(?P<value>.*)$", re.DOTALL)


def _redact_value(value: str, scrub: Scrubber) -> str:
    m = _KEY_VALUE.match(value)
    if m and secret_name(m.group("key").lstrip("+~")):
        scrub.add(m.group("value"))
        return f"{m.group('key')}={REDACTED}"
    return value
