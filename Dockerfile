# fedkd: one image for every role of a deployment (docs/deploy.md).
#   docker build -t fedkd .
#   docker run --rm fedkd superlink | supernode | register | app | simulate | certs   (see docker/entrypoint.sh)
# Every role is the same command a host without Docker runs; docker/compose.yaml wires a TLS federation.
FROM python:3.11-slim

# tini reaps orphans: a SuperNode's ClientApp processes outlive it when it crashes (PID 1 must wait() for them).
RUN apt-get update \
 && apt-get install -y --no-install-recommends tini \
 && rm -rf /var/lib/apt/lists/*

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HOME=/tmp \
    FLWR_HOME=/tmp/flwr-home \
    FLWR_TELEMETRY_ENABLED=0 \
    FLWR_DISABLE_UPDATE_CHECK=1 \
    FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION=1 \
    RAY_USAGE_STATS_ENABLED=0 \
    FEDKD_APP_DIR=/app

# CPU wheels of torch first (a layer of its own, reused across code changes); the CUDA ones are ~4 GB larger.
RUN pip install --index-url https://download.pytorch.org/whl/cpu "torch>=2.4,<=2.14.1" "torchvision>=0.19,<=0.29.1"

WORKDIR /app
COPY pyproject.toml README.md LICENSE ./
COPY fedkd ./fedkd
COPY server ./server
COPY clients ./clients
COPY docker/entrypoint.sh ./docker/entrypoint.sh
# Editable: /app is also the Flower app that `fedkd submit` bundles and sends to the SuperLink.
RUN pip install -e . && chmod 755 /app/docker/entrypoint.sh

# Any non-root uid works (compose passes the host user's, so mounted private keys stay 0600).
USER 1000:1000
EXPOSE 8000 9092 9400
ENTRYPOINT ["/usr/bin/tini", "--", "/app/docker/entrypoint.sh"]
CMD ["--help"]
