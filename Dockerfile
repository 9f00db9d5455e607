# slurm-graphql behind an ALB (deploy/ecs.yaml). No Slurm in the image: the clusters are reached
# through ssm:// (SLURM_GRAPHQL_CLUSTERS), with the task role's permissions.
#
#   docker build -t slurm-graphql .
#   docker run -p 8000:8000 -e SLURM_GRAPHQL_CLUSTERS='hpc=ssm://?cluster=hpc&region=eu-west-1' \
#     -e AWS_REGION=eu-west-1 slurm-graphql
#
# tests/deploy/test_container.py runs this file's ENTRYPOINT, CMD and HEALTHCHECK from a venv.
ARG PYTHON_IMAGE=python:3.12-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
RUN python -m venv /opt/venv
COPY pyproject.toml README.md ./
COPY schema schema
COPY resolvers resolvers
COPY transport transport
COPY server server
COPY slurm_graphql slurm_graphql
# A regular (not editable) install: the venv alone is copied into the runtime stage.
RUN /opt/venv/bin/pip install --no-cache-dir .

FROM ${PYTHON_IMAGE}
RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --no-create-home --shell /usr/sbin/nologin app
COPY --from=build /opt/venv /opt/venv
# Bind every interface, trust X-Forwarded-* from the ALB (tasks take traffic only from it, from
# the VPC's private addresses), keep idle connections open longer than the ALB's idle timeout
# (120 s in deploy/ecs.yaml) so it never reuses one the server has closed, and log JSON lines for
# CloudWatch. Not `*`: with it uvicorn takes the first X-Forwarded-For entry, which the client
# writes, so a client could name its own address (and escape per-address limits); with the
# proxies named, it takes the last entry no trusted proxy wrote: the one the ALB appended.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    SLURM_GRAPHQL_HOST=0.0.0.0 \
    SLURM_GRAPHQL_PORT=8000 \
    SLURM_GRAPHQL_KEEP_ALIVE=130 \
    SLURM_GRAPHQL_LOG_FORMAT=json \
    FORWARDED_ALLOW_IPS=10.0.0.0/8,172.16.0.0/12,192.168.0.0/16,127.0.0.0/8,::1
# Numeric, so an orchestrator can check it is not root without reading /etc/passwd.
USER 10001:10001
EXPOSE 8000
# The server finishes requests in flight for up to 10 s after SIGTERM (ECS waits 30 s).
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=30s --timeout=3s --start-period=15s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ['SLURM_GRAPHQL_PORT'] + '/healthz', timeout=2)"]
ENTRYPOINT ["slurm-graphql", "serve"]
CMD []
