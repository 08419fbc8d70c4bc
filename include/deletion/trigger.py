"""The trigger the ``approve`` task waits on: Airflow's own HITL trigger, plus closing a superseded request.

Why a trigger at all: on Airflow 3.3 ``HITLOperator.execute`` parks its task in ``awaiting_input``, and only
two things resume it: a person's answer (the REST API's ``PATCH …/hitlDetails``) and the scheduler's timeout
sweep (``SchedulerJobRunner.check_awaiting_input_timeouts``). No task may write another task's HITL record
(the execution API's ``/hitlDetails/{ti_id}`` routes require the scope ``ti:self``), so a newer run cannot
close an older run's request, and an ``awaiting_input`` task has nothing of its own running that could.

A deferred task does: :class:`PlanApprovalTrigger` is the provider's :class:`HITLTrigger` (the path
``HITLOperator`` itself takes before Airflow 3.3, and which the 3.3 REST API still resumes: its response
handler resumes ``deferred`` as well as ``awaiting_input`` HITL tasks). Besides waiting for the answer and
applying the default (Reject) at the timeout as :class:`HITLTrigger` does, it looks every poll for the run's
``superseded.json`` in the artifact store. When a newer run of the same DAG and target has written it, the
trigger closes the request the way Airflow's timeout closes one: it records Reject (the default) as the
response with no user as responder (``update_hitl_detail_response``, the call ``HITLTrigger`` makes at its
timeout), so the request leaves Browse → Required Actions, and it resumes ``approve``, which reads
``superseded.json`` and records the verdict ``superseded`` (nothing deleted, the run succeeds).

The trigger decides nothing about deleting: the event it fires carries the HITL record Airflow returned,
and ``approve`` judges it as it judges any other answer; a superseded plan is refused by ``superseded.json``
(written by the newer run, read from the artifact store), whatever the event says. The triggerer reaches the
artifact store with its own environment (``S3OPS_ARTIFACT_ROOT``, ``S3OPS_ARTIFACT_CONN_ID``): every way of
running the project gives all Airflow components the same one.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from airflow.providers.standard.triggers.hitl import HITLTrigger
from airflow.sdk.timezone import utcnow
from airflow.triggers.base import TriggerEvent

#: how often a waiting request is checked for an answer and for ``superseded.json`` (seconds)
POKE_INTERVAL = 5.0


def read_superseded(dag_id: str, run_id: str, asked_at: str | None = None) -> dict[str, Any] | None:
    """The run's ``superseded.json`` when it closes the request asked at ``asked_at`` (None while no newer plan
    has superseded that request; a marker left from an earlier request of the run closes nothing). Blocking I/O."""
    from include.core import artifacts
    from include.deletion import approval as gate

    marker = gate.read_optional(artifacts.run_dir(dag_id, run_id) / gate.SUPERSEDED_FILE)
    return marker if gate.closes(marker, None if asked_at is None else {"asked_at": asked_at}) else None


class PlanApprovalTrigger(HITLTrigger):
    """:class:`HITLTrigger` for a deletion plan's approval request that also closes the request, with Reject
    and no responder, once the run's plan has been superseded (``superseded.json``)."""

    def __init__(self, *, dag_id: str, run_id: str, asked_at: str | None = None, poke_interval: float = POKE_INTERVAL,
                 **kwargs: Any) -> None:
        super().__init__(poke_interval=poke_interval, **kwargs)
        self.dag_id = dag_id
        self.run_id = run_id
        self.asked_at = asked_at  # the request's (approval_request.json); None in a trigger stored before it was

    def serialize(self) -> tuple[str, dict[str, Any]]:
        _, kwargs = super().serialize()
        return f"{type(self).__module__}.{type(self).__qualname__}", {**kwargs, "dag_id": self.dag_id,
                                                                       "run_id": self.run_id, "asked_at": self.asked_at}

    async def _superseded(self) -> dict[str, Any] | None:
        try:
            return await asyncio.to_thread(read_superseded, self.dag_id, self.run_id, self.asked_at)
        except Exception:  # an unreadable store must not fail the request: keep waiting
            self.log.warning("[HITL] could not read superseded.json of %s/%s; still waiting", self.dag_id,
                             self.run_id, exc_info=True)
            return None

    async def _close_as_superseded(self, marker: dict[str, Any]) -> TriggerEvent | None:
        """Record Reject as the response (no responder), as the timeout records the default, and resume; None
        (keep waiting, try again at the next poll) when Airflow could not be reached."""
        from airflow.sdk.execution_time.hitl import update_hitl_detail_response
        from asgiref.sync import sync_to_async

        from include.deletion.approval import REJECT

        chosen = [REJECT]  # the option that deletes nothing, also the request's default
        try:
            resp = await sync_to_async(update_hitl_detail_response)(
                ti_id=self.ti_id, chosen_options=chosen, params_input=self.params.dump())
        except Exception:
            # Airflow refuses a second response (409): somebody answered in the meantime. Resume with that
            # answer; approve still finds superseded.json and deletes nothing.
            answered = await self._handle_response()
            if answered is None:
                self.log.warning("[HITL] could not close the superseded request; trying again", exc_info=True)
            return answered
        self.log.info("[HITL] plan superseded by run %s: request closed with %s and no responder",
                      marker.get("superseded_by"), chosen)
        return TriggerEvent({
            "chosen_options": list(resp.chosen_options or chosen), "params_input": resp.params_input or {},
            "responded_at": resp.responded_at, "responded_by_user": None, "timedout": False,
            "superseded_by": str(marker.get("superseded_by") or ""),
        })

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """Until the request is answered, superseded or expired: one of the three, checked in that order."""
        while True:
            event = await self._handle_response()
            if event is None:
                marker = await self._superseded()
                if marker is not None:
                    event = await self._close_as_superseded(marker)
                elif self.timeout_datetime and self.timeout_datetime < utcnow():
                    event = await self._handle_timeout()
            if event is not None:
                yield event
                return
            await asyncio.sleep(self.poke_interval)
