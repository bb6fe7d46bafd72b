"""The syncer: push runs to any fsspec backend, pull and verify them. Depends on runsync.format only.

(Backends — fsspec and s3fs and friends — are imported on first use of a remote, not here.)
"""

from .pull import pull, remote_runs, verify
from .push import PushOptions, PushResult, push
from .remote import Remote, RemoteError, RetryPolicy, redact

__all__ = ["Remote", "RemoteError", "RetryPolicy", "redact", "push", "PushOptions", "PushResult", "pull",
           "verify", "remote_runs"]
