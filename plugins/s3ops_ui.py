"""The "S3 Ops" Airflow UI plugin: Storage, Plans and Uploads pages read from the artifact store.

A FastAPI app mounted at ``/s3ops`` (pages: ``/s3ops/storage``, ``/s3ops/plans``, ``/s3ops/uploads``; the
same view models as JSON under ``/s3ops/api/…``) and a navigation entry "S3 Ops" that shows it inside
the Airflow UI. A plugin's FastAPI app is not behind Airflow's auth by itself: every route here depends
on :func:`require_user`, which validates the Airflow JWT (``Authorization: Bearer`` or the UI's ``_token``
cookie) with Airflow's own ``get_user``; a browser without a session is sent to the login page.
What a user sees is what the auth manager lets them read: only the runs of DAGs for which
``is_authorized_dag(GET, RUN)`` holds (with the DAG's team, as Airflow's own REST API asks), so a user who
may not read ``s3_retention`` sees none of its plans or keys, on any page or in the JSON.

Each DAG run's page in Airflow gets an "S3 Ops" tab (``external_views`` with ``destination: dag_run``,
``/s3ops/run/{DAG_ID}/{RUN_ID}``): a deletion run's plan (headline, reasons, sample keys, guard limits,
approval state, audit), a storage-report run's report, an upload run's batch results, with the same
rendering and checks as the S3 Ops pages.
The reading and rendering live in ``include.ui.views`` / ``include.ui.html`` (unit tested without Airflow).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Annotated, Any

from airflow.plugins_manager import AirflowPlugin
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

log = logging.getLogger(__name__)
URL_PREFIX = "/s3ops"


async def require_user(request: Request) -> Any:
    """The authenticated Airflow user, allowed to see plugin views; 401/403 otherwise."""
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.models.resource_details import AccessView
    from airflow.api_fastapi.core_api.security import get_user
    from fastapi.security import HTTPAuthorizationCredentials

    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    bearer = HTTPAuthorizationCredentials(scheme=scheme, credentials=token.strip()) if token.strip() else None
    user = await get_user(request, None, bearer)
    if not get_auth_manager().is_authorized_view(access_view=AccessView.PLUGINS, user=user):
        raise HTTPException(status_code=403, detail="Not allowed to see plugin views")
    return user


UserDep = Annotated[Any, Depends(require_user)]


def readable_dags(user: Any) -> set[str]:
    """The S3 Ops DAGs whose runs ``user`` may read, as the auth manager decides (never cached)."""
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity, DagDetails
    from airflow.models.dag import DagModel

    from include.ui.views import S3OPS_DAGS

    teams = DagModel.get_dag_id_to_team_name_mapping(list(S3OPS_DAGS))
    manager = get_auth_manager()
    return {dag_id for dag_id in S3OPS_DAGS if manager.is_authorized_dag(
        method="GET", access_entity=DagAccessEntity.RUN, details=DagDetails(id=dag_id, team_name=teams.get(dag_id)),
        user=user)}


def _approval_states(dag_ids: set[str], run_id: str | None = None) -> dict[tuple[str, str], str]:
    """State of each plan run's approval task, from the metadata DB (empty if it cannot be read)."""
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from sqlalchemy import select

    from include.ui.views import PLAN_DAGS

    query = select(TaskInstance.dag_id, TaskInstance.run_id, TaskInstance.state).where(
        TaskInstance.dag_id.in_(sorted(dag_ids & set(PLAN_DAGS))), TaskInstance.task_id.like("%approve"))
    if run_id is not None:
        query = query.where(TaskInstance.run_id == run_id)
    try:
        with create_session() as session:
            rows = session.execute(query).all()
    except Exception:  # the page still works from the artifacts alone
        log.exception("could not read approval states")
        return {}
    return {(dag_id, run_id): str(state) for dag_id, run_id, state in rows if state is not None}


def _run_conf(dag_id: str, run_id: str) -> Any:
    """The conf a run was triggered with (None when unknown)."""
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from sqlalchemy import select

    try:
        with create_session() as session:
            return session.scalar(select(DagRun.conf).where(DagRun.dag_id == dag_id, DagRun.run_id == run_id))
    except Exception:
        log.exception("could not read the conf of %s/%s", dag_id, run_id)
        return None


def _view(page: str, user: Any) -> dict[str, Any]:
    from include.ui import views as ui_views

    root = ui_views.artifact_root()
    readable = readable_dags(user)
    if page == "storage":
        return ui_views.storage_view(root, readable)
    if page == "plans":
        return ui_views.plans_view(root, _approval_states(readable), readable=readable)
    if page == "uploads":
        return ui_views.uploads_view(root, readable=readable)
    raise HTTPException(status_code=404, detail=f"no page {page!r}; pages: storage, plans, uploads")


def _run_view(dag_id: str, run_id: str, user: Any) -> dict[str, Any]:
    from include.ui import views as ui_views

    readable = readable_dags(user)
    allowed = dag_id in readable and ui_views.safe_run_id(run_id)
    state = _approval_states({dag_id}, run_id).get((dag_id, run_id)) if allowed else None
    return ui_views.run_view(ui_views.artifact_root(), dag_id, run_id, readable=readable, approval_state=state,
                             conf=_run_conf(dag_id, run_id) if allowed else None)


class StrictJSONResponse(JSONResponse):
    """JSON that any artifact can be shown in: NaN and infinities as null, every character escaped to ASCII
    (a lone surrogate in a hand-edited file cannot be encoded as UTF-8). ``Cache-Control: no-store``, as the
    pages: what a user may read is decided per request, and a cache (the browser's, a proxy) must not keep it."""

    def __init__(self, content: Any, status_code: int = 200, headers: Mapping[str, str] | None = None,
                 **kwargs: Any) -> None:
        super().__init__(content, status_code, {"Cache-Control": "no-store", **(headers or {})}, **kwargs)

    def render(self, content: Any) -> bytes:
        import json

        from include.ui.views import json_safe

        return json.dumps(json_safe(content), ensure_ascii=True, allow_nan=False, separators=(",", ":")).encode()


def _html(text: str, status_code: int = 200) -> HTMLResponse:
    return HTMLResponse(text.encode("utf-8", "backslashreplace"), status_code=status_code,
                        headers={"Cache-Control": "no-store"})


def create_app() -> FastAPI:
    app = FastAPI(title="S3 Ops", dependencies=[Depends(require_user)], docs_url=None, redoc_url=None,
                  openapi_url=None)

    @app.exception_handler(HTTPException)
    async def to_login(request: Request, exc: HTTPException) -> Response:
        # A person in a browser goes to the login page and comes back; API clients get the status.
        wants_html = "text/html" in request.headers.get("accept", "")
        if exc.status_code in (401, 403) and wants_html and exc.detail != "Not allowed to see plugin views":
            from airflow.api_fastapi.app import get_auth_manager

            return RedirectResponse(get_auth_manager().get_url_login(next_url=str(request.url)), status_code=302,
                                    headers={"Cache-Control": "no-store"})
        return StrictJSONResponse({"detail": exc.detail}, status_code=exc.status_code)  # no-store, as every answer

    @app.get("/")
    def index() -> RedirectResponse:
        return RedirectResponse(f"{URL_PREFIX}/storage", status_code=302)

    @app.get("/api/run/{dag_id}/{run_id}")
    def api_run(dag_id: str, run_id: str, user: UserDep) -> JSONResponse:
        view = _run_view(dag_id, run_id, user)
        return StrictJSONResponse(view, status_code=200 if view["allowed"] else 403)

    @app.get("/run/{dag_id}/{run_id}", response_class=HTMLResponse)
    def html_run(dag_id: str, run_id: str, user: UserDep) -> HTMLResponse:
        from include.ui import html as ui_html

        view = _run_view(dag_id, run_id, user)
        return _html(ui_html.render_run(view, base=URL_PREFIX), status_code=200 if view["allowed"] else 403)

    @app.get("/api/{page}")
    def api(page: str, user: UserDep) -> JSONResponse:
        return StrictJSONResponse(_view(page, user))

    @app.get("/{page}", response_class=HTMLResponse)
    def html(page: str, user: UserDep) -> HTMLResponse:
        from include.ui import html as ui_html

        render = {"storage": ui_html.render_storage, "plans": ui_html.render_plans,
                  "uploads": ui_html.render_uploads}.get(page)
        if render is None:
            raise HTTPException(status_code=404, detail=f"no page {page!r}; pages: storage, plans, uploads")
        return _html(render(_view(page, user), base=URL_PREFIX))

    return app


class S3OpsUIPlugin(AirflowPlugin):
    name = "s3ops_ui"
    fastapi_apps = [{"name": "s3ops", "app": create_app(), "url_prefix": URL_PREFIX}]
    external_views = [
        {"name": "S3 Ops", "href": f"{URL_PREFIX}/storage", "destination": "nav", "url_route": "s3ops",
         "nav_top_level": True},
        # a tab on every DAG run's page; Airflow fills in {DAG_ID} and {RUN_ID}
        {"name": "S3 Ops", "href": f"{URL_PREFIX}/run/{{DAG_ID}}/{{RUN_ID}}", "destination": "dag_run",
         "url_route": "s3ops_run"},
    ]
