"""The approval request's trigger (include/deletion/trigger.py) without a triggerer: it round-trips through the
form Airflow stores triggers in, resumes with a person's answer, closes a superseded request itself (Reject,
no responder) and still applies the timeout. Airflow's side of the two HITL calls a trigger makes is played
by :class:`_Triggerer`, which keeps the execution API's rule that a request is answered only once (409)."""

from __future__ import annotations

import asyncio
import importlib
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from include.core import artifacts
from include.deletion import approval as gate

ALICE = {"id": "alice", "name": "alice"}
TARGET = {"bucket": "b", "prefix": "deploys/"}


class _Triggerer:
    """The triggerer's supervisor as a trigger sees it (``SUPERVISOR_COMMS``) for one HITL request: it serves
    ``GetHITLDetailResponse`` and ``UpdateHITLDetail`` like ``TriggerRunnerSupervisor`` does through the
    execution API, whose PATCH records the response with no responder and refuses a second one."""

    def __init__(self, ti_id: uuid.UUID) -> None:
        self.ti_id = ti_id
        self.chosen: list[str] | None = None
        self.by: dict[str, str] | None = None
        self.at: datetime | None = None
        self.reads = 0
        self.writes: list[list[str]] = []
        self.answer_before_next_write: tuple[list[str], dict[str, str]] | None = None
        self.failing_writes = 0  # the API server is unreachable for this many writes

    def answer(self, chosen: list[str], by: dict[str, str] | None) -> None:
        self.chosen, self.by, self.at = chosen, by, datetime.now(UTC)

    def _detail(self) -> Any:
        from airflow.sdk.api.datamodels._generated import HITLDetailResponse

        return HITLDetailResponse(response_received=self.at is not None, chosen_options=self.chosen,
                                  responded_at=self.at, responded_by_user=self.by, params_input={})

    def send(self, msg: Any) -> Any:
        from airflow.sdk.exceptions import AirflowRuntimeError, ErrorType
        from airflow.sdk.execution_time.comms import ErrorResponse, GetHITLDetailResponse, UpdateHITLDetail

        assert msg.ti_id == self.ti_id, "a trigger reads and writes only its own task's request"
        if isinstance(msg, GetHITLDetailResponse):
            self.reads += 1
            return self._detail()
        assert isinstance(msg, UpdateHITLDetail), msg
        if self.answer_before_next_write:  # a person answers between the trigger's read and its write
            self.answer(*self.answer_before_next_write)
        if self.failing_writes:
            self.failing_writes -= 1
            raise AirflowRuntimeError(ErrorResponse(error=ErrorType.API_SERVER_ERROR, detail={
                "status_code": None, "message": "ConnectError"}))
        if self.at is not None:
            raise AirflowRuntimeError(ErrorResponse(error=ErrorType.API_SERVER_ERROR, detail={
                "status_code": 409, "message": "Human-in-the-loop detail … already exists."}))
        self.writes.append(list(msg.chosen_options))
        self.answer(list(msg.chosen_options), None)  # the execution API records no responder
        return self._detail()


def _trigger(timeout: datetime | None = None, poke: float = 0.02, asked_at: str | None = None) -> Any:
    from include.deletion.trigger import PlanApprovalTrigger

    return PlanApprovalTrigger(ti_id=uuid.uuid4(), options=["Approve", "Reject"], defaults=["Reject"], params={},
                               multiple=False, timeout_datetime=timeout, dag_id="d", run_id="old",
                               asked_at=asked_at, poke_interval=poke)


def _first_event(trigger: Any, airflow: _Triggerer, wait: float = 5.0, during: Any = None) -> Any:
    """Run the trigger as the triggerer would until its first event (None if it fires none within ``wait``
    seconds); ``during()`` runs once the trigger has polled a few times."""
    from airflow.sdk.execution_time.supervisor import set_supervisor_comms

    async def go() -> Any:
        events = trigger.run()
        task = asyncio.ensure_future(anext(events))
        if during is not None:
            while airflow.reads < 3 and not task.done():
                await asyncio.sleep(0.01)
            await asyncio.to_thread(during)
        try:
            return await asyncio.wait_for(task, wait)
        except TimeoutError:
            return None
        finally:
            await events.aclose()

    with set_supervisor_comms(airflow):
        return asyncio.run(go())


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An artifact store holding the older run's approval request (``d/old``)."""
    monkeypatch.setenv("S3OPS_ARTIFACT_ROOT", str(tmp_path))
    artifacts.write_json(tmp_path / "d" / "old" / gate.REQUEST_FILE, {
        "plan_id": "p-old", "target": TARGET, "asked_at": "2026-11-30T00:00:00+00:00"})
    return tmp_path


def _supersede(store: Path) -> list[str]:
    """What the newer run's approve does (``gate.supersede_older``): writes ``d/old/superseded.json``."""
    return gate.supersede_older(store / "d", run_id="newer", target=TARGET, asked_at="2026-11-30T06:00:00+00:00")


def test_the_trigger_round_trips_through_the_form_airflow_stores_it_in():
    """serialize() gives a classpath the triggerer can import and kwargs that survive the Trigger row's
    encoding (serde + Fernet) and rebuild an equal trigger."""
    from airflow.models.trigger import Trigger

    trigger = _trigger(timeout=datetime(2026, 12, 1, 8, tzinfo=UTC), asked_at="2026-12-01T00:00:00+00:00")
    classpath, kwargs = trigger.serialize()
    assert classpath == "include.deletion.trigger.PlanApprovalTrigger"
    stored = Trigger._decrypt_kwargs(Trigger.encrypt_kwargs(kwargs))
    module, name = classpath.rsplit(".", 1)
    rebuilt = getattr(importlib.import_module(module), name)(**stored)
    assert rebuilt.serialize() == (classpath, kwargs)
    assert (rebuilt.dag_id, rebuilt.run_id, rebuilt.ti_id, rebuilt.defaults) == ("d", "old", trigger.ti_id, ["Reject"])
    assert rebuilt.asked_at == "2026-12-01T00:00:00+00:00"


def test_a_persons_answer_resumes_the_task_with_it(store):
    trigger = _trigger()
    airflow = _Triggerer(trigger.ti_id)
    airflow.answer(["Approve"], ALICE)
    event = _first_event(trigger, airflow)
    assert event.payload["chosen_options"] == ["Approve"] and event.payload["responded_by_user"] == ALICE
    assert "superseded_by" not in event.payload and airflow.writes == []


def test_a_waiting_request_keeps_waiting_until_a_newer_plan_supersedes_it(store):
    """Nothing happens while nobody answers; once the newer run writes superseded.json the trigger closes the
    request with Reject and no responder (so it leaves Required Actions) and resumes the task."""
    trigger = _trigger()
    airflow = _Triggerer(trigger.ti_id)
    assert _first_event(trigger, airflow, wait=0.3) is None and airflow.writes == [] and airflow.reads > 3

    trigger = _trigger()
    airflow = _Triggerer(trigger.ti_id)
    event = _first_event(trigger, airflow, during=lambda: _supersede(store))
    assert airflow.writes == [["Reject"]] and airflow.at is not None and airflow.by is None  # closed
    assert event.payload["chosen_options"] == ["Reject"] and event.payload["responded_by_user"] is None
    assert event.payload["superseded_by"] == "newer" and event.payload["responded_at"] == airflow.at


def test_the_superseded_event_resumes_approve_to_superseded_and_skips_delete(tmp_path, monkeypatch):
    """approve's execute_complete turns the trigger's event into the verdict superseded (from superseded.json),
    deletes nothing (delete skipped) and says the request was closed without an answer."""
    from tests.unit.test_approval_gate import _recorded, _resume

    trigger = _trigger()
    airflow = _Triggerer(trigger.ti_id)
    monkeypatch.setenv("S3OPS_ARTIFACT_ROOT", str(tmp_path))
    trigger.run_id = "r"
    artifacts.write_json(tmp_path / "d" / "r" / gate.SUPERSEDED_FILE, {"superseded_by": "newer"})
    event = _first_event(trigger, airflow)
    result, skipped = _resume(tmp_path, monkeypatch, event.payload, superseded=True)
    record = _recorded(tmp_path)
    assert result["verdict"] == record["verdict"] == "superseded" and skipped == ["delete"]
    assert record["responded_by"] is None and record["chosen_options"] == ["Reject"]
    assert "closed without an answer" in record["reason"] and "'newer'" in record["reason"]


def test_an_answer_that_beats_the_close_is_the_one_resumed_with(store):
    """A person answers between the trigger's read and its write: Airflow refuses the second response (409)
    and the trigger resumes with the person's answer (approve still finds superseded.json)."""
    _supersede(store)
    trigger = _trigger()
    airflow = _Triggerer(trigger.ti_id)
    airflow.answer_before_next_write = (["Approve"], ALICE)
    event = _first_event(trigger, airflow)
    assert airflow.writes == [] and event.payload["responded_by_user"] == ALICE
    assert event.payload["chosen_options"] == ["Approve"] and "superseded_by" not in event.payload


def test_a_close_that_fails_is_tried_again_at_the_next_poll(store):
    """Airflow unreachable when the trigger closes the request: the trigger neither fails (which would fail
    approve) nor gives up; it closes the request at the next poll."""
    _supersede(store)
    trigger = _trigger()
    airflow = _Triggerer(trigger.ti_id)
    airflow.failing_writes = 1
    event = _first_event(trigger, airflow)
    assert airflow.failing_writes == 0 and airflow.writes == [["Reject"]]
    assert event.payload["superseded_by"] == "newer" and event.payload["responded_by_user"] is None


def test_a_marker_left_from_an_earlier_request_does_not_close_the_request_asked_again(store):
    """approve asked again (cleared, or the run planned again) after a newer run had superseded its first
    request: the trigger closed the new request at its first poll, so the run could never be approved. It
    now waits; a marker for this request, or one a trigger stored before markers named their request, closes."""
    _supersede(store)  # closes the request asked at 00:00
    trigger = _trigger(asked_at="2026-11-30T07:00:00+00:00")  # asked again at 07:00
    airflow = _Triggerer(trigger.ti_id)
    assert _first_event(trigger, airflow, wait=0.3) is None and airflow.writes == []
    trigger = _trigger(asked_at="2026-11-30T00:00:00+00:00")
    airflow = _Triggerer(trigger.ti_id)
    assert _first_event(trigger, airflow).payload["superseded_by"] == "newer"
    airflow = _Triggerer((old := _trigger()).ti_id)  # asked_at None: stored before the upgrade
    assert _first_event(old, airflow).payload["superseded_by"] == "newer"


def test_the_timeout_still_applies_the_default_with_no_responder(store):
    trigger = _trigger(timeout=datetime.now(UTC) - timedelta(seconds=1))
    airflow = _Triggerer(trigger.ti_id)
    event = _first_event(trigger, airflow)
    assert airflow.writes == [["Reject"]] and event.payload["timedout"] is True
    assert event.payload["responded_by_user"] is None and "superseded_by" not in event.payload


def test_an_unreadable_marker_leaves_the_request_waiting(store):
    """A superseded.json that cannot be read closes nothing: the request waits for a person or the timeout."""
    (store / "d" / "old" / gate.SUPERSEDED_FILE).write_text("{not json")
    trigger = _trigger()
    airflow = _Triggerer(trigger.ti_id)
    assert _first_event(trigger, airflow, wait=0.3) is None
    assert airflow.writes == [] and airflow.at is None and airflow.reads > 3
