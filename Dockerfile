# Switchyard's image: `docker build -t switchyard:0.1.0 .` — see README, "Deploy on Kubernetes".
# Dependencies come only from the lock files, every one checked against its hash.

FROM python:3.11.14-slim-bookworm AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PIP_ROOT_USER_ACTION=ignore
RUN python -m venv /opt/switchyard
WORKDIR /src
COPY requirements-build.lock requirements.lock ./
RUN /opt/switchyard/bin/pip install --require-hashes -r requirements-build.lock \
 && /opt/switchyard/bin/pip install --require-hashes -r requirements.lock
COPY pyproject.toml README.md ./
COPY gateway ./gateway
COPY adapters ./adapters
COPY policies ./policies
COPY observability ./observability
# A C compiler for the injection model's word part (gateway/safety/_wordscore.c); only this stage has it.
RUN apt-get update \
 && apt-get install -y --no-install-recommends gcc libc6-dev \
 && rm -rf /var/lib/apt/lists/*
# The project itself: its dependencies are all in place already, and nothing else may come in. The import
# (from /, not from the source tree, which holds no build) proves the C module was built.
RUN /opt/switchyard/bin/pip install --no-deps --no-build-isolation . \
 && cd / && /opt/switchyard/bin/python -c "import gateway.safety._wordscore"

FROM python:3.11.14-slim-bookworm
RUN groupadd --system --gid 10001 switchyard \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin switchyard
COPY --from=build /opt/switchyard /opt/switchyard
# HOME=/tmp: a writable place even with a read-only root filesystem (the chart mounts an emptyDir there).
ENV PATH=/opt/switchyard/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 HOME=/tmp
USER 10001:10001
EXPOSE 8080
ENTRYPOINT ["switchyard"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8080"]
