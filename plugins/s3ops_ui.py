"""The "S3 Ops" Airflow UI plugin: Storage, Plans and Uploads pages read from the artifact store.

A FastAPI app mounted at ``/s3ops`` (pages: ``/s3ops/storage``, ``/s3ops/plans``, ``/s3ops/uploads``; the
same view models as JSON under ``/s3ops/api/…``) and a navigation entry "S3 Ops" that shows it inside
the Airflow UI. A plugin's FastAPI app is not behind Airflow's auth by itself: every route here depends
on :func:`require_user`, which validates the Airflow JWT (``Authorization: Bearer`` or the UI's ``_token``
cookie) with Airflow's own ``get_user``; a browser without a session is sent to the login page.
The reading and rendering live in ``include.ui.views`` / ``include.ui.html`` (unit tested without Airflow).
"""

from __future__ import annotations

import logging
from typing import Any

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


def _approval_states() -> dict[tuple[str, str], str]:
    """State of each plan run's approval task, from the metadata DB (empty if it cannot be read)."""
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from sqlalchemy import select

    from include.ui.views import PLAN_DAGS

    try:
        with create_session() as session:
            rows = session.execute(
                select(TaskInstance.dag_id, TaskInstance.run_id, TaskInstance.state).where(
                    TaskInstance.dag_id.in_(PLAN_DAGS), TaskInstance.task_id.like("%approve")
                )
            ).all()
    except Exception:  # the page still works from the artifacts alone
        log.exception("could not read approval states")
        return {}
    return {(dag_id, run_id): str(state) for dag_id, run_id, state in rows if state is not None}


def _view(page: str) -> dict[str, Any]:
    from include.ui import views as ui_views

    root = ui_views.artifact_root()
    if page == "storage":
        return ui_views.storage_view(root)
    if page == "plans":
        return ui_views.plans_view(root, _approval_states())
    if page == "uploads":
        return ui_views.uploads_view(root)
    raise HTTPException(status_code=404, detail=f"no page {page!r}; pages: storage, plans, uploads")


def create_app() -> FastAPI:
    app = FastAPI(title="S3 Ops", dependencies=[Depends(require_user)], docs_url=None, redoc_url=None,
                  openapi_url=None)

    @app.exception_handler(HTTPException)
    async def to_login(request: Request, exc: HTTPException) -> Response:
        # A person in a browser goes to the login page and comes back; API clients get the status.
        wants_html = "text/html" in request.headers.get("accept", "")
        if exc.status_code in (401, 403) and wants_html and exc.detail != "Not allowed to see plugin views":
            from airflow.api_fastapi.app import get_auth_manager

            return RedirectResponse(get_auth_manager().get_url_login(next_url=str(request.url)), status_code=302)
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code)

    @app.get("/")
    def index() -> RedirectResponse:
        return RedirectResponse(f"{URL_PREFIX}/storage", status_code=302)

    @app.get("/api/{page}")
    def api(page: str) -> JSONResponse:
        return JSONResponse(_view(page))

    @app.get("/{page}", response_class=HTMLResponse)
    def html(page: str) -> HTMLResponse:
        from include.ui import html as ui_html

        render = {"storage": ui_html.render_storage, "plans": ui_html.render_plans,
                  "uploads": ui_html.render_uploads}.get(page)
        if render is None:
            raise HTTPException(status_code=404, detail=f"no page {page!r}; pages: storage, plans, uploads")
        return HTMLResponse(render(_view(page), base=URL_PREFIX), headers={"Cache-Control": "no-store"})

    return app


class S3OpsUIPlugin(AirflowPlugin):
    name = "s3ops_ui"
    fastapi_apps = [{"name": "s3ops", "app": create_app(), "url_prefix": URL_PREFIX}]
    external_views = [
        {"name": "S3 Ops", "href": f"{URL_PREFIX}/storage", "destination": "nav", "url_route": "s3ops",
         "nav_top_level": True},
    ]
