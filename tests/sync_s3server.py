"""One moto S3 server (real HTTP on 127.0.0.1, not ``mock_aws``) per test process, started lazily.

Used by tests/test_sync_s3.py and tests/test_sync_faults.py. Not a test module.
"""

from __future__ import annotations

import atexit
import logging
import threading
import uuid
from dataclasses import dataclass
from typing import Any

_lock = threading.Lock()
_server: MotoS3 | None = None


@dataclass
class MotoS3:
    endpoint: str
    bucket: str
    server: Any

    @property
    def storage_options(self) -> dict[str, Any]:
        return {"key": "testing", "secret": "testing", "client_kwargs": {"endpoint_url": self.endpoint,
                                                                          "region_name": "us-east-1"}}

    @property
    def env(self) -> dict[str, str]:
        """Environment under which a plain ``Remote("s3://...")`` (as the CLI builds it) reaches the server."""
        return {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_SESSION_TOKEN": "testing",
                "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL_S3": self.endpoint,
                "AWS_ENDPOINT_URL": self.endpoint}

    def fresh_url(self) -> str:
        return f"s3://{self.bucket}/t-{uuid.uuid4().hex[:12]}"

    def fs(self) -> Any:
        import s3fs

        return s3fs.S3FileSystem(**self.storage_options)


def moto_s3() -> MotoS3:
    """The process's moto server (started on first use) with one bucket created."""
    global _server
    with _lock:
        if _server is None:
            from moto.server import ThreadedMotoServer

            logging.getLogger("werkzeug").setLevel(logging.ERROR)
            srv = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
            srv.start()
            _, port = srv.get_host_and_port()
            endpoint = f"http://127.0.0.1:{port}"
            import boto3

            bucket = "runsync-test"
            boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="testing",
                         aws_secret_access_key="testing").create_bucket(Bucket=bucket)
            _server = MotoS3(endpoint, bucket, srv)
            atexit.register(srv.stop)
        return _server
