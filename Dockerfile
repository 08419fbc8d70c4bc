# The s3ops images for docker-compose.yaml.
#
#   airflow:   the official apache/airflow image plus this project's pinned providers
#              (docker/requirements-airflow.txt). DAGs, plugins and include/ are mounted, not copied.
#   s3server:  moto's S3 server with the project's control API (scripts/s3server.py), demo profile only.

FROM apache/airflow:3.3.2 AS airflow
COPY --chown=airflow:0 docker/requirements-airflow.txt /opt/s3ops/requirements-airflow.txt
# The image's own installed packages are the constraints (less the ones this project pins itself), and
# apache-airflow is named at the image's version: pip adds the providers and s3fs without silently
# replacing anything Airflow was built with; a conflict fails the build instead.
# tests/layout/test_requirements.py runs the same resolution with pip --dry-run.
RUN pip freeze | grep -viE "^($(grep -vE '^\s*(#|$)' /opt/s3ops/requirements-airflow.txt | sed -E 's/[=<>!~\[; ].*//' | paste -sd'|' -))==" \
      > /opt/s3ops/image-constraints.txt \
 && pip install --no-cache-dir "apache-airflow==${AIRFLOW_VERSION}" -r /opt/s3ops/requirements-airflow.txt \
      -c /opt/s3ops/image-constraints.txt
# Owned by airflow so that fresh named volumes mounted here are writable by the workers.
RUN mkdir -p /opt/airflow/artifacts /opt/airflow/uploads

FROM python:3.12-slim AS s3server
# awscrt: the server's flexible checksums (CRC64NVME, CRC32C), which moto alone does not compute
RUN pip install --no-cache-dir "moto[server]==5.2.5" "awscrt==0.38.0"
WORKDIR /opt/s3ops
COPY scripts/__init__.py scripts/s3server.py scripts/
USER nobody
EXPOSE 5000
CMD ["python", "-m", "scripts.s3server", "--host", "0.0.0.0", "--port", "5000"]
