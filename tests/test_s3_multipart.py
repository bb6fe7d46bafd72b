"""Large files to S3 (runsync/syncer/s3_multipart.py), against the moto server on 127.0.0.1 through s3fs:
byte-identical objects, a checksum per part, and an aborted upload leaves no parts behind."""

from __future__ import annotations

import asyncio
import hashlib
import os
from pathlib import Path

import pytest

pytest.importorskip("moto")
pytest.importorskip("s3fs")

from sync_s3server import MotoS3, moto_s3

from runsync.syncer import Remote, RemoteError, RetryPolicy
from runsync.syncer import s3_multipart


@pytest.fixture(scope="module")
def s3() -> MotoS3:
    return moto_s3()


def _big(path: Path, size: int) -> bytes:
    data = os.urandom(size)
    path.write_bytes(data)
    return data


def _client(s3: MotoS3):  # type: ignore[no-untyped-def]
    import boto3

    return boto3.client("s3", endpoint_url=s3.endpoint, region_name="us-east-1", aws_access_key_id="testing",
                        aws_secret_access_key="testing")


def test_part_size_stays_within_the_part_limit() -> None:
    assert s3_multipart.part_size(1 << 30) == 8 << 20
    assert s3_multipart.part_size(200 << 30) * 10_000 >= 200 << 30
    assert s3_multipart.part_size(200 << 30) % (1 << 20) == 0


def test_large_file_is_uploaded_whole_with_part_checksums(s3: MotoS3, tmp_path: Path) -> None:
    size = 2 * s3_multipart.PART_SIZE + 12345  # three parts, the last one short
    data = _big(tmp_path / "ckpt.bin", size)
    remote = Remote(s3.fresh_url(), storage_options=s3.storage_options)
    remote.upload(str(tmp_path / "ckpt.bin"), "files/ckpt.bin")
    assert hashlib.sha256(remote.read("files/ckpt.bin") or b"").digest() == hashlib.sha256(data).digest()
    key = remote.path("files/ckpt.bin").split("/", 1)[1]
    head = _client(s3).head_object(Bucket=s3.bucket, Key=key, ChecksumMode="ENABLED")
    assert head["ContentLength"] == size
    assert head["ETag"].strip('"').endswith("-3")  # a multipart object of three parts
    assert head.get("ChecksumCRC32"), head  # the parts' CRC32s, combined by the server


def test_failed_upload_is_aborted_and_reported(s3: MotoS3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _big(tmp_path / "ckpt.bin", 3 * s3_multipart.PART_SIZE)
    remote = Remote(s3.fresh_url(), storage_options=s3.storage_options)
    real = open
    calls = []

    def failing(path, mode="r", *a, **kw):  # type: ignore[no-untyped-def]
        f = real(path, mode, *a, **kw)
        if str(path).endswith("ckpt.bin") and "b" in mode and "r" in mode:
            calls.append(path)
            if len(calls) >= 2:
                f.close()
                raise OSError(5, "Input/output error (injected)")
        return f

    monkeypatch.setattr("builtins.open", failing)
    with pytest.raises(RemoteError, match="injected"):
        remote.upload(str(tmp_path / "ckpt.bin"), "files/ckpt.bin")
    assert remote.read("files/ckpt.bin") is None
    prefix = remote.path("files/ckpt.bin").split("/", 1)[1]
    pending = _client(s3).list_multipart_uploads(Bucket=s3.bucket, Prefix=prefix).get("Uploads", [])
    assert pending == []  # aborted: no orphaned parts


def test_checksums_off_when_the_site_turns_them_off(s3: MotoS3, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """AWS_REQUEST_CHECKSUM_CALCULATION=when_required (for servers that reject checksums) is respected."""
    monkeypatch.setenv("AWS_REQUEST_CHECKSUM_CALCULATION", "when_required")
    data = _big(tmp_path / "ckpt.bin", s3_multipart.PART_SIZE + 1)
    remote = Remote(s3.fresh_url(), storage_options=s3.storage_options)
    remote.upload(str(tmp_path / "ckpt.bin"), "files/ckpt.bin")
    assert remote.read("files/ckpt.bin") == data


def test_push_of_a_run_with_a_large_saved_file_pulls_back_identical(s3: MotoS3, root: Path, tmp_path: Path) -> None:
    import runsync
    from runsync.syncer import pull, push, verify

    big = tmp_path / "model.bin"
    _big(big, s3_multipart.PART_SIZE + 4096)
    run = runsync.init(dir=root, id="big-run")
    run.log({"loss": 1.0})
    run.save(str(big), base_path=str(tmp_path))
    run.finish()
    remote = Remote(s3.fresh_url(), storage_options=s3.storage_options)
    res = push(root, remote)
    assert not res.failures, res.failures
    assert verify(remote).ok
    back = tmp_path / "back"
    assert not pull(remote, back).failures
    original = {p.relative_to(root / "big-run"): p.read_bytes() for p in (root / "big-run").rglob("*")
                if p.is_file() and "/.runsync" not in str(p)}
    for rel, content in original.items():
        if rel.name != "manifest.json":
            assert (back / "big-run" / rel).read_bytes() == content, rel


def test_upload_reports_parts_as_they_arrive(s3: MotoS3, tmp_path: Path) -> None:
    size = 2 * s3_multipart.PART_SIZE + 7
    _big(tmp_path / "ckpt.bin", size)
    heard: list[int] = []
    Remote(s3.fresh_url(), storage_options=s3.storage_options).upload(str(tmp_path / "ckpt.bin"), "f.bin",
                                                                       progress=heard.append)
    assert heard[0] == 0 and heard[-1] == size and heard == sorted(heard) and len(heard) == 4, heard


def test_download_reports_bytes_as_they_arrive(s3: MotoS3, tmp_path: Path) -> None:
    size = 2 * s3_multipart.PART_SIZE + 7
    _big(tmp_path / "ckpt.bin", size)
    remote = Remote(s3.fresh_url(), storage_options=s3.storage_options)
    remote.upload(str(tmp_path / "ckpt.bin"), "f.bin")
    heard: list[int] = []
    remote.download("f.bin", str(tmp_path / "back.bin"), progress=heard.append)
    assert (tmp_path / "back.bin").read_bytes() == (tmp_path / "ckpt.bin").read_bytes()
    assert heard[0] == 0 and heard[-1] == size and heard == sorted(heard) and len(heard) > 2, heard


def _parts_sent(remote: Remote, monkeypatch: pytest.MonkeyPatch, error: Exception | None = None,
                fails: int = 0) -> list[int]:
    """The part numbers ``remote``'s uploads send from now on (a list that grows); with ``error``, part 2
    raises it on its first ``fails`` attempts (and retries do not sleep)."""
    fs = remote.fs
    real = fs._call_s3
    sent: list[int] = []

    async def call(method: str, *args, **kw):  # type: ignore[no-untyped-def]
        if method == "upload_part":
            sent.append(kw["PartNumber"])
            if error is not None and kw["PartNumber"] == 2 and sent.count(2) <= fails:
                await asyncio.sleep(0.4)  # as a network error takes a moment: the other parts get through
                raise error
        return await real(method, *args, **kw)

    monkeypatch.setattr(fs, "_call_s3", call)
    monkeypatch.setattr(s3_multipart, "_backoff", _no_sleep)
    return sent


async def _no_sleep(_attempt: int) -> None:
    return None


def test_a_part_that_meets_a_transient_error_is_sent_again_alone(s3: MotoS3, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """A short outage costs one part, not the whole file (nor the outer retry of the whole upload)."""
    data = _big(tmp_path / "ckpt.bin", 3 * s3_multipart.PART_SIZE)
    said: list[str] = []
    remote = Remote(s3.fresh_url(), storage_options=s3.storage_options,
                    policy=RetryPolicy(retries=0, say=said.append))
    sent = _parts_sent(remote, monkeypatch, ConnectionError("Connection reset by peer"), fails=2)
    heard: list[int] = []
    remote.upload(str(tmp_path / "ckpt.bin"), "files/ckpt.bin", progress=heard.append)
    assert sorted(sent) == [1, 2, 2, 2, 3], sent
    assert said == []  # the upload as a whole was not retried
    assert heard[-1] == len(data) and heard == sorted(heard)
    assert remote.read("files/ckpt.bin") == data


def test_a_part_that_meets_a_permanent_error_fails_the_upload_at_once(s3: MotoS3, tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    _big(tmp_path / "ckpt.bin", 3 * s3_multipart.PART_SIZE)
    remote = Remote(s3.fresh_url(), storage_options=s3.storage_options, policy=RetryPolicy(retries=0))
    sent = _parts_sent(remote, monkeypatch, PermissionError("Access Denied"), fails=99)
    with pytest.raises(RemoteError, match="Access Denied"):
        remote.upload(str(tmp_path / "ckpt.bin"), "files/ckpt.bin")
    assert sent.count(2) == 1, sent
    prefix = remote.path("files/ckpt.bin").split("/", 1)[1]
    assert _client(s3).list_multipart_uploads(Bucket=s3.bucket, Prefix=prefix).get("Uploads", []) == []


def _leave_upload(s3: MotoS3, remote: Remote, rel: str, parts: dict[int, bytes]) -> str:
    """What a pusher killed mid-file leaves: an unfinished upload (CRC32, as runsync creates it) with some parts."""
    c = _client(s3)
    key = remote.path(rel).split("/", 1)[1]
    up = c.create_multipart_upload(Bucket=s3.bucket, Key=key, ChecksumAlgorithm="CRC32")
    for n, body in parts.items():
        c.upload_part(Bucket=s3.bucket, Key=key, UploadId=up["UploadId"], PartNumber=n, Body=body,
                      ChecksumAlgorithm="CRC32")
    return key


def test_upload_left_by_a_killed_pusher_is_resumed(s3: MotoS3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Parts already on the server with the right bytes are kept; only the rest is sent."""
    monkeypatch.setattr(s3_multipart, "QUIET", 0.0)  # the upload left behind counts as abandoned at once
    step = s3_multipart.PART_SIZE
    data = _big(tmp_path / "ckpt.bin", 3 * step + 5)
    remote = Remote(s3.fresh_url(), storage_options=s3.storage_options)
    key = _leave_upload(s3, remote, "files/ckpt.bin", {1: data[:step], 2: data[step:2 * step]})
    sent = _parts_sent(remote, monkeypatch)
    heard: list[int] = []
    remote.upload(str(tmp_path / "ckpt.bin"), "files/ckpt.bin", progress=heard.append)
    assert sorted(sent) == [3, 4], sent
    assert heard[-1] == len(data) and heard == sorted(heard)
    assert remote.read("files/ckpt.bin") == data
    assert _client(s3).list_multipart_uploads(Bucket=s3.bucket, Prefix=key).get("Uploads", []) == []
    head = _client(s3).head_object(Bucket=s3.bucket, Key=key, ChecksumMode="ENABLED")
    assert head["ETag"].strip('"').endswith("-4") and head.get("ChecksumCRC32")


def test_parts_of_other_content_left_behind_are_sent_again(s3: MotoS3, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """A stale upload of the same key with different bytes (or a short part) is never trusted by number."""
    monkeypatch.setattr(s3_multipart, "QUIET", 0.0)  # the upload left behind counts as abandoned at once
    step = s3_multipart.PART_SIZE
    data = _big(tmp_path / "ckpt.bin", 2 * step + 5)
    remote = Remote(s3.fresh_url(), storage_options=s3.storage_options)
    _leave_upload(s3, remote, "files/ckpt.bin", {1: os.urandom(step), 2: data[step:2 * step], 3: data[2 * step:-1]})
    sent = _parts_sent(remote, monkeypatch)
    remote.upload(str(tmp_path / "ckpt.bin"), "files/ckpt.bin")
    assert sorted(sent) == [1, 3], sent  # part 2 matched; 1 had other bytes, 3 was one byte short
    assert remote.read("files/ckpt.bin") == data


_STALLING_PUSHER = """
import asyncio, json, sys
from runsync.syncer import Remote, push
url, opts, root = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3]
remote = Remote(url, storage_options=opts)
fs = remote.fs
real = fs._call_s3
async def call(method, *args, **kw):
    if method == "upload_part" and kw["PartNumber"] > 1:
        await asyncio.sleep(3600)  # the network stalls after part 1: the kill lands mid-file
    return await real(method, *args, **kw)
fs._call_s3 = call
push(root, remote)
"""


def test_kill_9_mid_file_then_push_again_sends_only_the_missing_parts(s3: MotoS3, root: Path, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(s3_multipart, "QUIET", 0.0)  # the upload left behind counts as abandoned at once
    import json
    import signal
    import subprocess
    import sys
    import time

    import runsync
    from runsync.syncer import pull, push, verify

    big = tmp_path / "model.bin"
    data = _big(big, 3 * s3_multipart.PART_SIZE)
    run = runsync.init(dir=root, id="big-run")
    run.log({"loss": 1.0})
    run.save(str(big), base_path=str(tmp_path))
    run.finish()
    url = s3.fresh_url()
    prefix = url.split("/", 3)[3]
    c = _client(s3)
    proc = subprocess.Popen([sys.executable, "-c", _STALLING_PUSHER, url, json.dumps(s3.storage_options), str(root)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while True:  # until part 1 is on the server
            ups = c.list_multipart_uploads(Bucket=s3.bucket, Prefix=prefix).get("Uploads", [])
            if ups and c.list_parts(Bucket=s3.bucket, Key=ups[0]["Key"], UploadId=ups[0]["UploadId"]).get("Parts"):
                break
            assert proc.poll() is None and time.monotonic() < deadline, "the pusher never sent part 1"
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    remote = Remote(url, storage_options=s3.storage_options)
    sent = _parts_sent(remote, monkeypatch)
    res = push(root, remote)
    assert not res.failures, res.failures
    assert sorted(sent) == [2, 3], sent  # part 1 survived the kill and was kept
    assert c.list_multipart_uploads(Bucket=s3.bucket, Prefix=prefix).get("Uploads", []) == []
    assert verify(remote).ok
    assert not pull(remote, tmp_path / "back").failures
    back = [p for p in (tmp_path / "back" / "big-run").rglob("*") if p.is_file() and p.stat().st_size == len(data)]
    assert [p.read_bytes() == data for p in back] == [True]


def test_an_upload_still_being_sent_is_left_alone(s3: MotoS3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A recent unfinished upload may be a live pusher's (live sync beside a manual push): not taken over, and
    never aborted; the file goes up in an upload of its own."""
    step = s3_multipart.PART_SIZE
    data = _big(tmp_path / "ckpt.bin", 2 * step + 5)
    remote = Remote(s3.fresh_url(), storage_options=s3.storage_options)
    key = _leave_upload(s3, remote, "files/ckpt.bin", {1: data[:step]})
    [theirs] = _client(s3).list_multipart_uploads(Bucket=s3.bucket, Prefix=key)["Uploads"]
    sent = _parts_sent(remote, monkeypatch)
    remote.upload(str(tmp_path / "ckpt.bin"), "files/ckpt.bin")
    assert sorted(sent) == [1, 2, 3], sent
    assert remote.read("files/ckpt.bin") == data
    left = _client(s3).list_multipart_uploads(Bucket=s3.bucket, Prefix=key).get("Uploads", [])
    assert [u["UploadId"] for u in left] == [theirs["UploadId"]]  # the other pusher's upload is untouched


def test_an_upload_taken_over_that_ends_meanwhile_is_replaced_by_a_new_one(s3: MotoS3, tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Its pusher completes or aborts it while we resume it (NoSuchUpload): the file is sent afresh."""
    monkeypatch.setattr(s3_multipart, "QUIET", 0.0)
    step = s3_multipart.PART_SIZE
    data = _big(tmp_path / "ckpt.bin", 2 * step + 5)
    remote = Remote(s3.fresh_url(), storage_options=s3.storage_options)
    key = _leave_upload(s3, remote, "files/ckpt.bin", {1: data[:step]})
    [theirs] = _client(s3).list_multipart_uploads(Bucket=s3.bucket, Prefix=key)["Uploads"]
    fs = remote.fs
    real = fs._call_s3
    sent: list[tuple[str, int]] = []

    async def call(method: str, *args, **kw):  # type: ignore[no-untyped-def]
        if method == "upload_part":
            sent.append((kw["UploadId"], kw["PartNumber"]))
            if kw["UploadId"] == theirs["UploadId"] and len(sent) == 1:  # the other pusher aborts now
                _client(s3).abort_multipart_upload(Bucket=s3.bucket, Key=key, UploadId=theirs["UploadId"])
        if kw.get("UploadId") == theirs["UploadId"] and method in ("upload_part", "complete_multipart_upload"):
            # S3 answers 404 NoSuchUpload, which s3fs raises as FileNotFoundError (moto answers 500 and
            # an internal KeyError, which would only be retried until it gives up)
            raise FileNotFoundError(f"NoSuchUpload: {theirs['UploadId']}")
        return await real(method, *args, **kw)

    monkeypatch.setattr(fs, "_call_s3", call)
    heard: list[int] = []
    remote.upload(str(tmp_path / "ckpt.bin"), "files/ckpt.bin", progress=heard.append)
    assert sorted(n for u, n in sent if u != theirs["UploadId"]) == [1, 2, 3], sent
    assert remote.read("files/ckpt.bin") == data
    assert heard[-1] == len(data) and max(heard) == len(data)
    assert _client(s3).list_multipart_uploads(Bucket=s3.bucket, Prefix=key).get("Uploads", []) == []


def test_an_outage_longer_than_the_part_retries_resumes_the_upload_on_retry(s3: MotoS3, tmp_path: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """The upload is left in place, not aborted, when a part runs out of retries on a network error: the
    retry of the file sends only the parts that had not arrived."""
    data = _big(tmp_path / "ckpt.bin", 3 * s3_multipart.PART_SIZE)
    said: list[str] = []
    remote = Remote(s3.fresh_url(), storage_options=s3.storage_options,
                    policy=RetryPolicy(retries=2, base=0.01, say=said.append))
    fails = s3_multipart.PART_RETRIES + 1  # every try of part 2 in the first upload attempt
    sent = _parts_sent(remote, monkeypatch, ConnectionError("Connection reset by peer"), fails=fails)
    heard: list[int] = []
    remote.upload(str(tmp_path / "ckpt.bin"), "files/ckpt.bin", progress=heard.append)
    assert len(said) == 1 and "retrying" in said[0], said  # the whole file was retried once...
    assert sent.count(1) == 1 and sent.count(3) == 1, sent  # ...and sent only what had not arrived
    assert sent.count(2) == fails + 1, sent
    assert remote.read("files/ckpt.bin") == data
    assert heard[-1] == len(data)
    key = remote.path("files/ckpt.bin").split("/", 1)[1]
    assert _client(s3).list_multipart_uploads(Bucket=s3.bucket, Prefix=key).get("Uploads", []) == []
    assert not s3_multipart._interrupted
