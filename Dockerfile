# syntax=docker/dockerfile:1
# One image for both processes: `newapi operator` (the default) and `newapi gateway`.
#   docker build -t newapi-operator .
#   docker run --rm newapi-operator gateway --help
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- build: wheels of the project and of every dependency, pinned by constraints.txt ---------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
# a C compiler for mypyc, which compiles the metering hot path (setup.py); the runtime stage has none
RUN apt-get update -qq \
 && apt-get install -y -qq --no-install-recommends gcc libc6-dev \
 && rm -rf /var/lib/apt/lists/*
COPY pyproject.toml setup.py constraints.txt README.md ./
COPY hack/mypyc.ini hack/
COPY operator/ operator/
COPY gateway/ gateway/
RUN python -m pip wheel --constraint constraints.txt --wheel-dir /wheels . \
 && python -m venv /opt/newapi \
 && /opt/newapi/bin/pip install --no-index --find-links /wheels --constraint constraints.txt newapi-operator

# --- runtime: the virtualenv only, run as an unprivileged user ----------------------------------
FROM ${PYTHON_IMAGE} AS runtime
ENV PATH=/opt/newapi/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN groupadd --system --gid 10001 newapi \
 && useradd --system --uid 10001 --gid newapi --home-dir /nonexistent --no-create-home \
      --shell /usr/sbin/nologin newapi
COPY --from=build /opt/newapi /opt/newapi
USER 10001:10001
WORKDIR /tmp
# 8080: the operator's Kopf liveness endpoint; the gateway's port is set by its own flags.
EXPOSE 8080
ENTRYPOINT ["newapi"]
CMD ["operator"]
