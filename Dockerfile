# syntax=docker/dockerfile:1
# One image for every tenant group. Installs exactly what `make` installs (scripts/install.sh + constraints.txt).
#   docker build -t atrium .                       # with the embedded local model and embeddings
#   docker build -t atrium --build-arg LOCAL=0 .   # provider models only (smaller image)
# The manifests (deploy/, `atrium deploy render`) run it as the `atrium` user below (uid 10001) on a read-only root
# filesystem; tests/test_image.py checks this file's contract (layer order, CPU torch, user).

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ARG LOCAL=1
# PyPI's torch for Linux is the CUDA build (gigabytes): torch alone comes from PyTorch's CPU index.
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
RUN apt-get update && apt-get install -y --no-install-recommends build-essential cmake git \
    && rm -rf /var/lib/apt/lists/*
# The app lives at /app in both stages: the editable install points there, so config/, prompts/, demo/ and
# .chainlit/ resolve the same way as in a checkout.
WORKDIR /app
# The dependencies first, from what declares them only: a code change leaves this layer (and its llama.cpp
# compile) cached.
COPY pyproject.toml constraints.txt /app/
COPY scripts/install.sh /app/scripts/install.sh
RUN if [ "$LOCAL" = "1" ]; then extras=local; else extras=""; fi \
    && VENV=/opt/venv EXTRAS="$extras" STAGE=deps TORCH_INDEX_URL="$TORCH_INDEX_URL" bash scripts/install.sh
# Then the source, and the app itself on top of the installed dependencies (seconds).
COPY . /app
RUN if [ "$LOCAL" = "1" ]; then extras=local; else extras=""; fi \
    && VENV=/opt/venv EXTRAS="$extras" EDITABLE=1 STAGE=project bash scripts/install.sh

FROM ${PYTHON_IMAGE} AS runtime
RUN apt-get update && apt-get install -y --no-install-recommends libgomp1 curl \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --gid 10001 atrium && useradd --create-home --uid 10001 --gid 10001 atrium
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
COPY --from=build --chown=atrium:atrium /app /app
ENV PATH="/opt/venv/bin:$PATH" \
    ATRIUM_DATA_DIR=/data \
    LITELLM_LOCAL_MODEL_COST_MAP=True \
    HF_HUB_OFFLINE=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# What the app writes (the manifests mount emptyDirs there on a read-only root): the data dir (chat files, the usage
# spool) and the libraries' caches.
RUN mkdir -p /data /home/atrium/.cache && chown atrium:atrium /data /home/atrium/.cache
USER 10001:10001
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD curl -fsS http://127.0.0.1:8000/healthz || exit 1
# X-Forwarded-For is believed only from ATRIUM_TRUSTED_PROXIES (`atrium serve`'s --forwarded-allow-ips defaults to
# it; empty by default: the TCP peer is the client). The manifests set it to the load balancer's ranges; never "*"
# on a port clients can reach directly.
CMD ["atrium", "serve", "--host", "0.0.0.0", "--port", "8000"]
