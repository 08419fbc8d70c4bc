"""include.dag_defaults.DeploymentNotifier("failure") around its artifact store: an unreachable store does not
keep a failure from being reported, tasks failing together report it once, and a repeat of the same outage
with other counts is held back for the window. The provider notifiers are replaced by a recorder."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from botocore.exceptions import EndpointConnectionError

from include import dag_defaults
from include.core import artifacts

TARGETS = json.dumps({"notifications": ["ops@example.com"]})


@pytest.fixture
def delivered(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> list[tuple[Any, Any]]:
    """(target, message) of every notification handed to a provider; a local artifact root of its own."""
    monkeypatch.setenv(artifacts.ROOT_ENV, str(tmp_path / "artifacts"))
    monkeypatch.setenv("AIRFLOW_VAR_S3OPS_UPLOAD", TARGETS)
    monkeypatch.setenv("AIRFLOW_VAR_S3OPS_STORAGE_REPORT", TARGETS)
    out: list[tuple[Any, Any]] = []
    monkeypatch.setattr(dag_defaults, "provider_notifier",
                        lambda target, message: lambda context: out.append((target, message)))
    return out


def _fail(dag_id: str, task_id: str, error: BaseException, *, run_id: str = "scheduled__r1", map_index: int = -1) -> None:
    ti = SimpleNamespace(dag_id=dag_id, run_id=run_id, task_id=task_id, map_index=map_index, try_number=4)
    dag_defaults.DeploymentNotifier("failure").notify({"ti": ti, "exception": error})


def _unreachable(*args: Any, **kwargs: Any) -> Any:
    raise EndpointConnectionError(endpoint_url="http://127.0.0.1:9/artifacts/s3_upload/scheduled__r1/settings.json")


@pytest.mark.parametrize(("broken", "reaches"), [
    ("exists", "ops@example.com"),  # the run's settings cannot be read: the Variable's targets
    ("read_bytes", "ops@example.com"),
    ("create_exclusive", "run@example.com"),  # the report mark cannot be claimed: sent all the same
])
def test_an_unreachable_artifact_store_still_reports_the_failure(delivered, monkeypatch, caplog, broken, reaches):
    """s3fs lets botocore's connection errors through as they are; one escaped the failure callback, the
    Variable's targets were never tried, and nobody was told the store was down."""
    artifacts.write_json(artifacts.run_dir("s3_upload", "scheduled__r1") / "settings.json",
                         {"values": {"notifications": ["run@example.com"]}})
    monkeypatch.setattr(artifacts, broken, _unreachable)
    _fail("s3_upload", "scan", EndpointConnectionError(endpoint_url="http://127.0.0.1:9/artifacts"))
    assert [(t.to, m.event) for t, m in delivered] == [((reaches,), "failure")]
    assert "EndpointConnectionError" in caplog.text  # what failed is logged


def test_a_broken_variable_and_an_unreachable_store_are_logged_not_raised(delivered, monkeypatch, caplog):
    monkeypatch.setenv("AIRFLOW_VAR_S3OPS_UPLOAD", '{"notifications": oops}')
    monkeypatch.setattr(artifacts, "exists", _unreachable)
    _fail("s3_upload", "scan", RuntimeError("boom"))
    assert delivered == []
    assert "EndpointConnectionError" in caplog.text and "no failure notification sent" in caplog.text


def test_mapped_tasks_failing_together_send_one_message(delivered, monkeypatch):
    """Each callback read the mark, sent (an SMTP round trip) and only then wrote it: 16 mails."""
    slow = dag_defaults.provider_notifier

    def slow_notifier(target: Any, message: Any) -> Any:
        time.sleep(0.2)
        return slow(target, message)

    monkeypatch.setattr(dag_defaults, "provider_notifier", slow_notifier)
    error = ConnectionError("Could not connect to the endpoint URL")
    threads = [threading.Thread(target=_fail, args=("s3_storage_report", "summarize_shard", error),
                                kwargs={"map_index": i}) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(delivered) == 1


def test_a_claim_whose_write_landed_before_its_retry_answered_taken_is_still_ours(delivered, monkeypatch):
    """botocore retries a conditional PUT whose answer was lost; the retry finds the key taken (412). It is
    this task's own mark: the failure is sent, not held back for the whole window."""
    real = artifacts.create_exclusive

    def landed_then_lost(path: Any, data: bytes) -> bool:
        real(path, data)  # the first try landed
        return False  # its retry: 412, taken
    monkeypatch.setattr(artifacts, "create_exclusive", landed_then_lost)
    _fail("s3_upload", "check", RuntimeError("3 file(s) failed"))
    assert len(delivered) == 1
    # another task's claim is not taken for this one's
    _fail("s3_upload", "check", RuntimeError("3 file(s) failed"), run_id="scheduled__r2")
    assert len(delivered) == 1


def test_a_failure_that_reached_nobody_releases_its_claim(delivered, monkeypatch):
    def down(target: Any, message: Any) -> Any:
        raise ConnectionRefusedError("SMTP is down")

    monkeypatch.setattr(dag_defaults, "provider_notifier", down)
    _fail("s3_upload", "check", RuntimeError("3 file(s) failed"))
    monkeypatch.setattr(dag_defaults, "provider_notifier",
                        lambda target, message: lambda context: delivered.append((target, message)))
    _fail("s3_upload", "check", RuntimeError("3 file(s) failed"), run_id="scheduled__r2")
    assert len(delivered) == 1


def test_the_repeat_window_runs_from_the_last_report_across_slots(delivered, monkeypatch):
    window = dag_defaults.FAILURE_REPEAT_AFTER.total_seconds()
    start = 100 * window + window - 600  # ten minutes before a slot ends
    clock = {"now": start}
    monkeypatch.setattr(time, "time", lambda: clock["now"])

    def at(offset: float) -> int:
        clock["now"] = start + offset
        _fail("s3_upload", "check", RuntimeError("12 file(s) failed"), run_id=f"scheduled__{offset}")
        return len(delivered)

    assert at(0) == 1
    assert at(1200) == 1  # the next slot, 20 minutes later: held back
    assert at(window - 1) == 1
    assert at(window) == 2  # a window after the report
    assert at(window + 60) == 2


def test_tasks_failing_either_side_of_a_slot_boundary_send_once(delivered, monkeypatch):
    """The marks were per 6-hour clock slot: a task whose clock read just before a slot's end and one just
    after claimed different marks, and when each looked for the other's before it was written, both sent.
    Both read here before either claims."""
    window = dag_defaults.FAILURE_REPEAT_AFTER.total_seconds()
    clocks = {"before": 100 * window - 1, "after": 100 * window + 1}
    wall = time.time
    monkeypatch.setattr(time, "time", lambda: clocks.get(threading.current_thread().name) or wall())
    both_read = threading.Barrier(2, timeout=10)
    create = artifacts.create_exclusive

    def create_once_both_have_read(path: Any, data: bytes) -> bool:
        both_read.wait()
        return create(path, data)

    monkeypatch.setattr(artifacts, "create_exclusive", create_once_both_have_read)
    threads = [threading.Thread(target=_fail, name=name, args=("s3_upload", "check", RuntimeError("3 file(s) failed")),
                                kwargs={"run_id": f"scheduled__{name}"}) for name in clocks]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(delivered) == 1
    # the later task reads the earlier's clock as a little ahead of its own (another worker's): still held back
    monkeypatch.setattr(artifacts, "create_exclusive", create)
    clocks["MainThread"] = 100 * window - 30
    _fail("s3_upload", "check", RuntimeError("4 file(s) failed"), run_id="scheduled__later")
    assert len(delivered) == 1


def test_an_outage_with_growing_counts_is_one_failure(delivered):
    """The upload's check names the counts, and the counts grew every minute: a new mail every minute."""
    from include.upload.uploader import problems

    for minute, failed in enumerate([12, 13, 14, 15]):
        _fail("s3_upload", "check", RuntimeError(problems({"failed": failed, "conflicts": 0})),
              run_id=f"scheduled__m{minute}")
    assert len(delivered) == 1
    assert "12 file(s) failed" in delivered[0][1].subject  # the message keeps the numbers
    _fail("s3_upload", "check", RuntimeError("the bucket does not exist"), run_id="scheduled__m5")
    assert len(delivered) == 2  # another failure is another message


def test_create_exclusive_creates_once_on_a_local_root(tmp_path):
    path = tmp_path / "marks" / "k.json"
    assert artifacts.create_exclusive(path, b"first")
    assert not artifacts.create_exclusive(path, b"second")
    assert path.read_bytes() == b"first"
    assert [p.name for p in path.parent.iterdir()] == ["k.json"]  # written aside, linked in: nothing left over


class _FakeS3Path:
    """An ``s3://`` artifact path whose conditional PUT fails with ``error``."""

    def __init__(self, error: BaseException) -> None:
        self.error, self.written = error, b""
        self.fs = SimpleNamespace(pipe_file=self._pipe_file)
        self.path = "bucket/marks/k.json"

    def exists(self) -> bool:
        return False

    def _pipe_file(self, path: str, data: bytes, mode: str = "overwrite") -> None:
        assert mode == "create"
        raise self.error

    def open(self, mode: str) -> Any:
        import io

        fake = self

        class Sink(io.BytesIO):
            def close(self) -> None:
                fake.written = self.getvalue()
                super().close()

        return Sink()


def _translated(code: str, errno_: int) -> OSError:
    """What s3fs raises for an S3 error code: an OSError caused by botocore's ClientError."""
    from botocore.exceptions import ClientError

    error = OSError(errno_, code)
    error.__cause__ = ClientError({"Error": {"Code": code, "Message": code}}, "PutObject")
    return error


def test_create_exclusive_on_s3_tells_a_lost_race_from_a_store_without_conditional_writes():
    import errno

    assert not artifacts.create_exclusive(_FakeS3Path(FileExistsError("taken")), b"x")
    assert not artifacts.create_exclusive(_FakeS3Path(_translated("PreconditionFailed", errno.EINVAL)), b"x")
    assert not artifacts.create_exclusive(_FakeS3Path(_translated("ConditionalRequestConflict", errno.EIO)), b"x")
    unsupported = _FakeS3Path(_translated("NotImplemented", errno.ENOSYS))
    assert artifacts.create_exclusive(unsupported, b"x") and unsupported.written == b"x"  # best effort: written
    with pytest.raises(OSError, match="AccessDenied"):
        artifacts.create_exclusive(_FakeS3Path(_translated("AccessDenied", errno.EACCES)), b"x")


@pytest.mark.parametrize(("reachable", "record"), [(False, {"sent": 0, "wanted": 1}), (True, {"sent": 1, "wanted": 1})])
def test_the_approval_notifier_records_whom_the_request_reached(delivered, monkeypatch, reachable, record):
    """A request that reached nobody (SMTP down) and then expired passed for a decision nobody made: the
    notifier records it, for the audit (approval.reached_nobody)."""
    from include.deletion.approval import NOTIFIED_FILE

    monkeypatch.setenv("AIRFLOW_VAR_S3OPS_RETENTION", TARGETS)
    run = artifacts.run_dir("s3_retention", "scheduled__r1")
    artifacts.write_json(run / "plan.json", {"plan_id": "p1", "delete_count": 3, "bucket": "jobs"})
    if not reachable:
        def down(target: Any, message: Any) -> Any:
            raise ConnectionRefusedError("SMTP is down")
        monkeypatch.setattr(dag_defaults, "provider_notifier", down)
    ti = SimpleNamespace(dag_id="s3_retention", run_id="scheduled__r1", task_id="approve", map_index=-1, try_number=1)
    dag_defaults.DeploymentNotifier("approval").notify({"ti": ti})
    noted = artifacts.read_json(run / NOTIFIED_FILE)
    assert {k: noted[k] for k in ("plan_id", "sent", "wanted")} == {"plan_id": "p1", **record}
    assert len(delivered) == (1 if reachable else 0)


def test_a_mark_another_task_is_still_writing_is_not_taken_for_this_ones(delivered, monkeypatch):
    """On a local root another task's exclusive create has landed and its write has not: the read-back found
    an empty file, the error made the claim "unsure, send", and both tasks sent."""
    def created_not_written(path: Any, data: bytes) -> bool:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_bytes(b"")
        return False
    monkeypatch.setattr(artifacts, "create_exclusive", created_not_written)
    _fail("s3_upload", "check", RuntimeError("3 file(s) failed"))
    assert delivered == []


class Steps:
    """Holds the named threads at the points a test names (before and after each exclusive create of a
    report mark) and lets each go on in the order the test drives: no sleeps, the interleaving as written."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, *holds: tuple[str, str, int]) -> None:
        self.holds = {h: (threading.Event(), threading.Event()) for h in holds}
        self.seen: dict[tuple[str, str], int] = {}
        real = artifacts.create_exclusive

        def stepped(path: Any, data: bytes) -> bool:
            self._at("create")
            created = real(path, data)
            self._at("created")
            return created
        monkeypatch.setattr(artifacts, "create_exclusive", stepped)

    def _at(self, point: str) -> None:
        key = (threading.current_thread().name, point)
        self.seen[key] = self.seen.get(key, 0) + 1
        hold = self.holds.get((*key, self.seen[key]))
        if hold is not None:
            hold[0].set()
            assert hold[1].wait(30), f"{key} was never let go"

    def reach(self, name: str, point: str, n: int = 1) -> None:
        assert self.holds[(name, point, n)][0].wait(30), f"{name} never reached {point} #{n}"

    def go(self, name: str, point: str, n: int = 1) -> None:
        self.holds[(name, point, n)][1].set()

    @staticmethod
    def start(name: str, action: Any) -> threading.Thread:
        thread = threading.Thread(target=action, name=name)
        thread.start()
        return thread


#: the real clock, for tests that set time.time
_wall = time.time


def reported_days_ago(report: Any, age_marks: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """``report()`` once, three days ago: its mark says so, and is as old to housekeeping (``age_marks``)."""
    with monkeypatch.context() as m:
        m.setattr(time, "time", lambda: _wall() - 3 * 86_400)
        report()
    age_marks()


def _age_local_marks() -> None:
    import os

    old = _wall() - 3 * 86_400
    for mark in (artifacts.artifact_root() / "_notifications").iterdir():
        os.utime(mark, (old, old))


def _housekeep() -> int:
    from include.core.housekeeping import housekeep

    return int(housekeep(artifacts.artifact_root(), {})["notification_marks_removed"])


def _upload_check_fails(run_id: str) -> Any:
    return lambda: _fail("s3_upload", "check", RuntimeError("3 file(s) failed"), run_id=run_id)


def test_a_chain_forgotten_between_a_read_and_a_claim_sends_once(delivered, monkeypatch):
    """Housekeeping forgets the two-day-old mark 0 after A read it: B, failing next, finds no mark, claims 0
    again and sends; A then created 1, a different name, and sent too."""
    reported_days_ago(_upload_check_fails("scheduled__r0"), _age_local_marks, monkeypatch)
    steps = Steps(monkeypatch, ("A", "create", 1))
    a = steps.start("A", _upload_check_fails("scheduled__a"))
    steps.reach("A", "create")  # A read mark 0, three days old: it will send
    assert _housekeep() == 1
    steps.start("B", _upload_check_fails("scheduled__b")).join()  # no mark: B claims 0 and sends
    steps.go("A", "create")
    a.join()
    assert len(delivered) == 2  # the report three days ago, and one now


def test_a_chain_forgotten_while_both_claim_sends_once(delivered, monkeypatch):
    """B lists after the chain was forgotten, A creates 1, B creates 0, then A looks back: one message."""
    reported_days_ago(_upload_check_fails("scheduled__r0"), _age_local_marks, monkeypatch)
    steps = Steps(monkeypatch, ("A", "create", 1), ("A", "created", 1), ("B", "create", 1))
    a = steps.start("A", _upload_check_fails("scheduled__a"))
    steps.reach("A", "create")
    assert _housekeep() == 1
    b = steps.start("B", _upload_check_fails("scheduled__b"))
    steps.reach("B", "create")  # B found no mark
    steps.go("A", "create")
    steps.reach("A", "created")  # A holds mark 1
    steps.go("B", "create")
    b.join()  # B holds mark 0 and sent
    steps.go("A", "created")
    a.join()
    assert len(delivered) == 2
    names = sorted(p.name.rsplit(".", 2)[1] for p in (artifacts.artifact_root() / "_notifications").iterdir())
    assert names == ["0"]  # A withdrew its mark: the chain goes on from B's


def test_a_chain_forgotten_after_a_claim_sends_once(delivered, monkeypatch):
    """A created mark 1, then housekeeping forgot mark 0: B sees A's fresh mark and stands back; A, finding
    its predecessor gone, claims again (mark 0) and sends: one message, the chain starting afresh."""
    reported_days_ago(_upload_check_fails("scheduled__r0"), _age_local_marks, monkeypatch)
    steps = Steps(monkeypatch, ("A", "created", 1))
    a = steps.start("A", _upload_check_fails("scheduled__a"))
    steps.reach("A", "created")
    assert _housekeep() == 1
    steps.start("B", _upload_check_fails("scheduled__b")).join()
    assert len(delivered) == 1  # B stood back behind A's claim
    steps.go("A", "created")
    a.join()
    assert len(delivered) == 2
    _fail("s3_upload", "check", RuntimeError("3 file(s) failed"), run_id="scheduled__c")
    assert len(delivered) == 2  # the new chain holds the next failure back
