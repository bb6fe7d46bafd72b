"""What a backend needs before it connects, checked by runsync so that a wrong setup fails at once with a
message a person can act on, instead of late, slowly, or silently as the backend library would.

- SFTP (sshfs): host keys are checked against the user's and the system's known_hosts files, as ssh does;
  sshfs alone checks none.
- GCS (gcsfs): a ``GOOGLE_APPLICATION_CREDENTIALS`` that cannot be read makes gcsfs go on anonymously
  without a word; a service-account key the token endpoint refuses makes it retry for about 35 s. The key
  is read and exchanged for a token here, once, and the credentials handed to gcsfs.

Credentials themselves never leave the backend's own objects: nothing here prints or stores them.
"""

from __future__ import annotations

import json
import os
import ssl
from collections.abc import Callable
from typing import Any

from .._logging import get_logger
from .errors import RemoteError, RemoteSetupError

__all__ = ["connect_options"]

GCS_SCOPE = "https://www.googleapis.com/auth/devstorage.full_control"  # gcsfs's default access


def connect_options(protocol: str, display: str, options: dict[str, Any],
                    retried: Callable[[str, Callable[[], Any]], Any], url_credentials: bool = False) -> dict[str, Any]:
    """fsspec options to add to ``options`` for ``protocol`` (never overriding what the user gave).
    ``retried(what, fn)`` runs a network operation under the remote's retry policy."""
    if protocol in ("sftp", "ssh") and "known_hosts" not in options:
        return _known_hosts(protocol, display)
    if protocol in ("gs", "gcs") and "token" not in options:
        return _google_service_account(display, options, retried)
    if protocol in ("s3", "s3a") and not url_credentials:  # s3://KEY:SECRET@bucket: s3fs's to use
        _aws_credentials(display, options)
    return {}


_AWS_WAYS = ("set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN for temporary keys); "
             "or put a profile in ~/.aws/credentials or ~/.aws/config and select it with AWS_PROFILE; "
             "or pass -o key=ACCESS_KEY -o secret=SECRET_KEY (visible in your shell history); "
             "or -o anon=true for a public bucket")


def _aws_credentials(display: str, options: dict[str, Any]) -> None:
    """Fail at once, saying how to give credentials, when S3 has none (botocore would look for them in
    the instance metadata service for seconds, then fail with 'Unable to locate credentials')."""
    if options.get("anon") or options.get("key") or options.get("profile") or options.get("session"):
        return
    try:
        import botocore.session
    except ImportError:
        return  # s3fs is missing: the remote's setup says which extra to install
    session = botocore.session.get_session()
    # an instance role on a cloud VM is a valid source: ask the metadata service once, briefly
    session.set_config_variable("metadata_service_timeout", 1)
    session.set_config_variable("metadata_service_num_attempts", 1)
    try:
        creds = session.get_credentials()
    except Exception as e:  # a broken ~/.aws/config, an unknown AWS_PROFILE
        raise RemoteSetupError(f"{display}: cannot read AWS credentials ({type(e).__name__}: {e}); {_AWS_WAYS}") \
            from None
    if creds is None:
        raise RemoteSetupError(f"{display}: no AWS credentials found; {_AWS_WAYS}")


def _known_hosts(protocol: str, display: str) -> dict[str, Any]:
    """sshfs checks no host key unless told where known hosts are (-o known_hosts=null turns checking off)."""
    import fsspec

    try:
        if not fsspec.get_filesystem_class(protocol).__module__.startswith("sshfs"):
            return {}  # fsspec's paramiko backend: it has its own host key policy and no such option
    except (ImportError, ValueError):
        return {}
    files = [f for f in (os.path.expanduser("~/.ssh/known_hosts"), "/etc/ssh/ssh_known_hosts") if os.path.isfile(f)]
    if files:
        return {"known_hosts": files}
    get_logger("syncer").warning(f"runsync: warning: no ~/.ssh/known_hosts or /etc/ssh/ssh_known_hosts, so the host "
                                 f"key of {display} is not checked (add it with ssh-keyscan, or pass "
                                 "-o known_hosts=PATH)")
    return {}


def _google_service_account(display: str, options: dict[str, Any],
                            retried: Callable[[str, Callable[[], Any]], Any]) -> dict[str, Any]:
    key = os.environ.get("GOOGLE_APPLICATION_CREDENTIALS")
    if not key:
        return {}  # gcloud's login, the metadata server, ...: gcsfs's own search
    try:
        with open(key, "rb") as f:
            info = json.load(f)
    except (OSError, ValueError) as e:
        what = e.strerror if isinstance(e, OSError) and e.strerror else "not a JSON key file"
        raise RemoteSetupError(f"{display}: GOOGLE_APPLICATION_CREDENTIALS={key} cannot be read ({what}); point it "
                               "at a service-account key file, or unset it to use gcloud's login") from None
    if not isinstance(info, dict) or info.get("type") != "service_account":
        return {}  # a user or workload-identity credential: gcsfs's own handling
    try:
        from google.auth.exceptions import RefreshError, TransportError
        from google.auth.transport.requests import Request
        from google.oauth2 import service_account
    except ImportError:
        return {}  # gcsfs is not installed: Remote says which extra to install
    try:
        creds = service_account.Credentials.from_service_account_info(info, scopes=[GCS_SCOPE])
    except Exception as e:  # google-auth's messages may quote the key: name the error type only
        missing = [f for f in ("client_email", "private_key", "token_uri") if f not in info]
        what = f"missing {', '.join(missing)}" if missing else f"{type(e).__name__}; check its private_key"
        raise RemoteSetupError(f"{display}: GOOGLE_APPLICATION_CREDENTIALS={key} is not a usable service-account "
                               f"key ({what})") from None

    def refresh() -> None:
        try:
            creds.refresh(Request())
        except TransportError as e:  # the token endpoint was not reached (DNS, connection): retried
            if "CERTIFICATE_VERIFY_FAILED" in str(e):  # not retried: the CA hint instead
                raise ssl.SSLError(f"token endpoint: {e}") from None
            raise ConnectionError(f"token endpoint: {type(e).__name__}: {e}") from None
        except RefreshError as e:  # its text repeats the endpoint's whole answer
            said = e.args[0] if e.args else str(e)
            if getattr(e, "retryable", False):
                raise ConnectionError(f"token endpoint: {said}") from None  # retried
            raise PermissionError(f"the token endpoint refused the key: {said}") from None
    try:
        retried("get a token for the service account in GOOGLE_APPLICATION_CREDENTIALS", refresh)
    except RemoteError as e:
        raise RemoteSetupError(f"{display}: cannot {e}") from None
    out: dict[str, Any] = {"token": creds}
    if "project" not in options and info.get("project_id"):
        out["project"] = info["project_id"]
    return out
