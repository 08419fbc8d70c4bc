"""How a batch hands files to the CRT client and takes its answers back in groups (no server: a fake
client that answers on its own threads, as the CRT client does)."""

from __future__ import annotations

import base64
import os
import random
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from awscrt.checksums import crc64nvme
from awscrt.checksums import crc64nvme as crc64nvme_of  # in FakePutter.start, where crc64nvme is a parameter

from include.aws.crt import Answer, crt_credentials, keep_thread_state
from include.upload.layout import scan_base_dir
from include.upload.settings import resolve_settings
from include.upload.uploader import (
    FAILED,
    NOT_READY,
    UPLOADED,
    Answers,
    Uploader,
    open_scanned,
    read_local,
    upload_candidates,
)

NOW = datetime(2026, 3, 1, 12, tzinfo=UTC)


def _answer_later(answers: Answers, item: Any, delay: float) -> threading.Thread:
    thread = threading.Thread(target=lambda: (time.sleep(delay), answers.put(*item)))
    thread.start()
    return thread


def test_take_waits_for_a_group_then_returns_it_whole():
    answers = Answers(wake_at=3, linger=1.0)
    for _ in range(5):
        answers.sent()
    threads = [_answer_later(answers, (f"p{i}", Answer(200)), 0.05 * (i + 1)) for i in range(3)]
    got = answers.take()
    assert [p for p, _ in got] == ["p0", "p1", "p2"]  # not woken for the first or the second alone
    assert answers.in_flight == 2
    for t in threads:
        t.join()


def test_take_does_not_wait_for_a_group_larger_than_what_is_in_flight():
    answers = Answers(wake_at=16)
    answers.sent()
    answers.sent()
    threads = [_answer_later(answers, (f"p{i}", Answer(200)), 0.01) for i in range(2)]
    started = time.monotonic()
    got = answers.take()
    assert len(got) == 2 and answers.in_flight == 0
    assert time.monotonic() - started < 0.9  # woken by the last answer, not by the 1 s safety timeout
    for t in threads:
        t.join()


def test_answers_behind_slow_uploads_wait_only_the_linger():
    answers = Answers(wake_at=3, linger=0.05)
    for _ in range(5):  # four of them slow (big files, say): their answers do not come
        answers.sent()
    thread = _answer_later(answers, ("p0", Answer(200)), 0.01)
    started = time.monotonic()
    assert [p for p, _ in answers.take()] == ["p0"]
    assert time.monotonic() - started < 0.5 and answers.in_flight == 4
    thread.join()


def test_a_request_the_client_refused_is_not_waited_for():
    answers = Answers(wake_at=2)
    answers.sent()
    answers.sent()
    answers.not_sent()  # the CRT refused the second one at submission
    thread = _answer_later(answers, ("p0", Answer(200)), 0.01)
    assert [p for p, _ in answers.take()] == ["p0"] and answers.in_flight == 0
    thread.join()


class FakePutter:
    """Answers every upload on a pool of other threads after a random delay, like the CRT client;
    ``refuse`` names files whose submission raises. It reads the file at ``path`` as the CRT client
    does, and refuses bytes that do not match the checksum sent (BadDigest), as S3 does; ``sent`` keeps
    the bytes of each upload by key."""

    def __init__(self, refuse: set[str] = frozenset(), silent: set[str] = frozenset(),  # type: ignore[assignment]
                 deaf: bool = False) -> None:
        self.pool = ThreadPoolExecutor(8)
        self.refuse = refuse
        self.silent = silent  # never answered (a connection that took the bytes and hangs) until cancelled
        self.deaf = deaf  # a cancel is not answered either (a wedged client)
        self.cancelled: list[str] = []
        self.started: list[str] = []
        self.sent: dict[str, bytes] = {}
        self.in_flight = self.peak = 0
        self.lock = threading.Lock()

    def start(self, key: str, path: str, size: int, *, crc64nvme: str, if_none_match: bool, done: Any,
              progress: Any = None) -> Any:
        if os.path.basename(key) in self.refuse:
            raise RuntimeError("the CRT refused the request")
        if os.path.basename(key) in self.silent:
            putter = self

            class Hanging:
                def cancel(self) -> None:
                    putter.cancelled.append(key)
                    if not putter.deaf:
                        putter.pool.submit(done, Answer(0, {}, "AWS_ERROR_S3_CANCELED", "Request successfully cancelled"))

            return Hanging()
        with self.lock:
            self.started.append(key)
            self.in_flight += 1
            self.peak = max(self.peak, self.in_flight)

        def answer() -> None:
            time.sleep(random.random() / 500)
            try:
                with open(path, "rb") as fh:  # later, on its own thread, as the CRT client reads the file
                    body = fh.read()
            except OSError as exc:  # what the CRT client answers when it cannot read the file
                with self.lock:
                    self.in_flight -= 1
                done(Answer(0, {}, "aws-c-common: AWS_ERROR_FILE_INVALID_PATH", str(exc)))
                return
            matches = base64.b64encode(crc64nvme_of(body).to_bytes(8, "big")).decode() == crc64nvme
            with self.lock:
                self.sent[key] = body
                self.in_flight -= 1
            if not matches:
                done(Answer(400, {}, "BadDigest", "The CRC64NVME you specified did not match the calculated checksum."))
                return
            done(Answer(200, {"x-amz-checksum-crc64nvme": crc64nvme, "x-amz-checksum-type": "FULL_OBJECT"}))

        self.pool.submit(answer)
        return None


def _tree(base: Path, n: int) -> None:
    old = (NOW - timedelta(hours=1)).timestamp()
    for i in range(n):
        path = base / "berlin" / "2026" / "03" / "01" / "10" / f"{i % 60:02d}-t{i}.dat"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(f"{i}\n".encode() * (i % 7))  # some are empty
        os.utime(path, (old, old))


@pytest.mark.parametrize("workers", [1, 2, 5, 64])
def test_every_file_gets_one_row_and_in_flight_stays_within_workers(tmp_path, workers):
    base = tmp_path / "producer"
    _tree(base, 37)
    settings, _ = resolve_settings({"base_dir": str(base), "bucket": "my-bucket", "settle_seconds": 0}, None,
                                   by_deployer=True)
    putter = FakePutter(refuse={"07-t7.dat"})
    uploader = Uploader(client=None, settings=settings, scanned_at=NOW, putter=putter)  # type: ignore[arg-type]
    result = upload_candidates(uploader, scan_base_dir(base, NOW, 0, 1000).eligible, workers=workers)

    rows = {r["key"]: r for r in result.rows}
    assert len(result.rows) == len(rows) == 37
    refused = rows.pop("berlin/2026/03/01/10/07-t7.dat")
    assert refused["status"] == FAILED and "refused" in refused["error"]
    assert all(r["status"] == UPLOADED for r in rows.values())
    assert putter.peak <= workers
    for key, row in rows.items():  # the checksum recorded is the file's
        i = int(key.rsplit("-t", 1)[1].removesuffix(".dat"))
        crc = base64.b64encode(crc64nvme(f"{i}\n".encode() * (i % 7)).to_bytes(8, "big")).decode()
        assert row["checksum"] == f"crc64nvme:{crc}"
    assert [p.name for p in base.rglob("*.dat")] == ["07-t7.dat"]  # only the refused file is kept


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # the empty secret's, in the CRT's callback
def test_static_credentials_are_handed_over_once_refreshable_ones_keep_refreshing(monkeypatch):
    from botocore.credentials import Credentials, RefreshableCredentials
    from s3transfer.crt import BotocoreCRTCredentialsWrapper

    asked = []  # the delegate's calls into Python: one per request it signs
    real_call = BotocoreCRTCredentialsWrapper.__call__
    monkeypatch.setattr(BotocoreCRTCredentialsWrapper, "__call__", lambda self: asked.append(1) or real_call(self))

    static = crt_credentials(Credentials("AKIDSTATIC", "secret", "token"))
    got = static.get_credentials().result(5)
    assert (got.access_key_id, got.secret_access_key, got.session_token) == ("AKIDSTATIC", "secret", "token")
    assert asked == []

    # an empty secret (a connection with a login and no password): each request fails, the task does not
    empty = crt_credentials(Credentials("AKIDSTATIC", ""))
    with pytest.raises(Exception):  # noqa: B017 - whatever the CRT makes of it, it comes from the request
        empty.get_credentials().result(5)
    assert asked == [1]

    calls = []

    def refresh() -> dict[str, str]:
        calls.append(1)
        expiry = datetime.now(UTC) + timedelta(seconds=1)  # inside botocore's refresh window
        return {"access_key": f"AKID{len(calls)}", "secret_key": "s", "token": "t", "expiry_time": expiry.isoformat()}

    refreshable = crt_credentials(RefreshableCredentials.create_from_metadata(refresh(), refresh, "test"))
    first = refreshable.get_credentials().result(5).access_key_id
    second = refreshable.get_credentials().result(5).access_key_id
    assert first != second and first.startswith("AKID") and second.startswith("AKID")
    assert len(asked) == 3


def test_keeping_a_thread_state_is_only_an_optimisation_it_never_fails(monkeypatch):
    """Without ctypes (a Python built without libffi) nothing is kept and nothing raises: a callback that
    raised would leave its upload without an answer, and the batch waiting for ever."""
    monkeypatch.setitem(sys.modules, "ctypes", None)  # `import ctypes` now raises ImportError
    failures: list[BaseException] = []

    def on_a_new_thread() -> None:
        try:
            keep_thread_state()
            keep_thread_state()
        except BaseException as exc:  # noqa: BLE001 - the test reports it
            failures.append(exc)

    thread = threading.Thread(target=on_a_new_thread)
    thread.start()
    thread.join(10)
    assert not thread.is_alive() and failures == []


def _replace(path: Path, kind: str) -> None:
    """Swap a scanned file for something that is not a regular file, as a producer (or an intruder) could."""
    st = path.stat()
    path.unlink()
    if kind == "fifo":  # no writer: a plain open() of it waits for ever
        os.mkfifo(path)
    elif kind == "folder":
        path.mkdir()
    else:  # a link to another file of the very same size and mtime (e.g. one the uploader may read, the producer not)
        target = path.parent.parent / "elsewhere.bin"
        target.write_bytes(b"x" * st.st_size)
        os.utime(target, ns=(st.st_mtime_ns, st.st_mtime_ns))
        path.symlink_to(target)


@pytest.mark.timeout(20)
@pytest.mark.parametrize("kind, shown", [("fifo", "a FIFO"), ("symlink", "a symbolic link"), ("folder", "a folder")])
def test_a_file_replaced_after_the_scan_by_no_regular_file_is_kept_and_never_waited_for(tmp_path, kind, shown):
    base = tmp_path / "producer"
    _tree(base, 5)
    settings, _ = resolve_settings({"base_dir": str(base), "bucket": "my-bucket", "settle_seconds": 0}, None,
                                   by_deployer=True)
    candidates = scan_base_dir(base, NOW, 0, 1000).eligible
    victim = base / candidates[2].rel
    _replace(victim, kind)
    putter = FakePutter()
    uploader = Uploader(client=None, settings=settings, scanned_at=NOW, putter=putter)  # type: ignore[arg-type]

    result = upload_candidates(uploader, candidates, workers=2)

    rows = {r["key"]: r for r in result.rows}
    row = rows.pop(candidates[2].rel)
    assert (row["status"], row["error"]) == (NOT_READY, f"changed since the scan: no longer a regular file ({shown}); kept")
    assert candidates[2].rel not in putter.started and os.path.lexists(victim)
    assert [r["status"] for r in rows.values()] == [UPLOADED] * 4


def test_a_scanned_file_is_read_as_before_blocking_with_the_same_checksum(tmp_path):
    path = tmp_path / "f.dat"
    path.write_bytes(b"0123456789" * 1000)
    with open(path, "rb", buffering=0, opener=open_scanned) as fh:
        assert os.get_blocking(fh.fileno())  # the non-blocking open does not change how it is read
        local = read_local(fh)
    assert local.crc64nvme == base64.b64encode(crc64nvme(path.read_bytes()).to_bytes(8, "big")).decode()
    assert local.size == 10_000


@pytest.mark.parametrize("deaf", [False, True])
def test_a_stalled_upload_is_cancelled_and_its_file_kept_and_nothing_more_is_sent(tmp_path, monkeypatch, deaf):
    """Answers.take waited for ever: a connection that took the bytes and never answered hung the batch (and,
    with max_active_runs=1, every later run), with no failure and no notification. After STALL_SECONDS
    without an answer or progress, what is in flight is cancelled (a client that does not answer the cancel
    either is given up on), every file stays, and the rest of the batch is not sent."""
    import include.upload.uploader as upload

    monkeypatch.setattr(upload, "STALL_SECONDS", 0.3)
    base = tmp_path / "producer"
    _tree(base, 12)
    settings, _ = resolve_settings({"base_dir": str(base), "bucket": "my-bucket", "settle_seconds": 0}, None,
                                   by_deployer=True)
    putter = FakePutter(silent={"03-t3.dat"}, deaf=deaf)
    uploader = Uploader(client=None, settings=settings, scanned_at=NOW, putter=putter)  # type: ignore[arg-type]
    eligible = scan_base_dir(base, NOW, 0, 1000).eligible
    result = upload_candidates(uploader, eligible, workers=1)  # the hanging upload holds the only slot
    rows = {Path(r["path"]).name: r for r in result.rows}
    assert len(rows) == 12 and putter.cancelled == [settings.key(next(c.rel for c in eligible if c.rel.endswith("03-t3.dat")))]
    assert rows["03-t3.dat"]["status"] == "failed" and "no answer and no progress from S3" in rows["03-t3.dat"]["error"]
    assert (base / "berlin/2026/03/01/10/03-t3.dat").exists()
    not_sent = [n for n, r in rows.items() if r["error"].startswith("not sent: S3 stalled")]
    uploaded = [n for n, r in rows.items() if r["status"] == "uploaded"]
    assert sorted(uploaded) == ["00-t0.dat", "01-t1.dat", "02-t2.dat"] and len(not_sent) == 8  # none sent after it
    assert all((base / "berlin/2026/03/01/10" / n).exists() for n in not_sent)
    assert len(putter.started) + len(putter.cancelled) == 12 - len(not_sent)


class _NothingAtTheKey:
    """An S3 client whose HeadObject finds no object (404), as botocore raises it."""

    def head_object(self, **_: Any) -> Any:
        from botocore.exceptions import ClientError

        raise ClientError({"Error": {"Code": "404", "Message": "Not Found"}}, "HeadObject")


@pytest.mark.parametrize(("status", "code", "why"), [(412, "PreconditionFailed", "removed since"),
                                                     (409, "ConditionalRequestConflict", "another write to it was in flight")])
def test_a_refused_upload_with_nothing_at_the_key_is_a_failure_not_a_conflict(tmp_path, status, code, why):
    """412/409 say an object was there or was being written; with none there now, "a different object exists"
    would be false, and the file must stay for the next run."""
    base = tmp_path / "producer"
    _tree(base, 2)
    settings, _ = resolve_settings({"base_dir": str(base), "bucket": "my-bucket", "settle_seconds": 0}, None,
                                   by_deployer=True)

    class Refusing(FakePutter):
        def start(self, key: str, path: str, size: int, *, crc64nvme: str, if_none_match: bool, done: Any,
                  progress: Any = None) -> Any:
            self.pool.submit(done, Answer(status, {}, code, "refused"))

    uploader = Uploader(client=_NothingAtTheKey(), settings=settings, scanned_at=NOW, putter=Refusing())  # type: ignore[arg-type]
    result = upload_candidates(uploader, scan_base_dir(base, NOW, 0, 1000).eligible, workers=2)
    assert [r["status"] for r in result.rows] == [FAILED, FAILED]
    assert all(f"({code}: refused) but no object is at the key now ({why})" in r["error"] for r in result.rows)
    assert len(list(base.rglob("*.dat"))) == 2
