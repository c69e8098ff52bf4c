# syntax=docker/dockerfile:1
# One image for every tenant group. Installs exactly what `make` installs (scripts/install.sh + constraints.txt).
#   docker build -t atrium .                       # with the embedded local model and embeddings
#   docker build -t atrium --build-arg LOCAL=0 .   # provider models only (smaller image)

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ARG LOCAL=1
RUN apt-get update && apt-get install -y --no-install-recommends build-essential cmake git \
    && rm -rf /var/lib/apt/lists/*
# The app lives at /app in both stages: the editable install points there, so config/, prompts/, demo/ and
# .chainlit/ resolve the same way as in a checkout.
WORKDIR /app
COPY . /app
RUN if [ "$LOCAL" = "1" ]; then extras=local; else extras=""; fi \
    && VENV=/opt/venv EXTRAS="$extras" EDITABLE=1 bash scripts/install.sh

FROM ${PYTHON_IMAGE} AS runtime
RUN apt-get update && apt-get install -y --no-install-recommends libgomp1 curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --create-home --uid 10001 atrium
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
COPY --chown=atrium:atrium . /app
ENV PATH="/opt/venv/bin:$PATH" \
    ATRIUM_DATA_DIR=/data \
    LITELLM_LOCAL_MODEL_COST_MAP=True \
    HF_HUB_OFFLINE=1 \
    PYTHONUNBUFFERED=1
RUN mkdir -p /data && chown atrium:atrium /data
USER atrium
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD curl -fsS http://127.0.0.1:8000/healthz || exit 1
# X-Forwarded-For is believed only from ATRIUM_TRUSTED_PROXIES (empty by default: the TCP peer is the client);
# set it to the load balancer's addresses, never to "*" on a port clients can reach directly.
CMD ["atrium", "serve", "--host", "0.0.0.0", "--port", "8000"]
