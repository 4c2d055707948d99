# nbo serve in a container. Build and run (docs/deployment.md explains every line):
#
#   docker build -t nbo .
#   docker run -d --name nbo -p 127.0.0.1:50051:50051 -v nbo-data:/var/lib/nbo \
#       -e NBO_ADMIN_TOKEN="$(openssl rand -hex 32)" nbo
#
# Mount your own campaign over /etc/nbo/campaign.toml (the image ships examples/renewal.toml).
# tests/deploy/test_container_install.py runs this file's install step and CMD in a clean venv.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    NUMBA_CACHE_DIR=/var/lib/nbo/.numba-cache \
    PATH=/opt/nbo/bin:$PATH

COPY . /src
RUN sh /src/deploy/install.sh /src /opt/nbo \
    && install -D -m 0644 /src/examples/renewal.toml /etc/nbo/campaign.toml \
    && install -m 0755 /src/deploy/healthcheck.py /opt/nbo/bin/nbo-healthcheck \
    && useradd --system --uid 10001 --home-dir /var/lib/nbo --shell /usr/sbin/nologin nbo \
    && mkdir -p /var/lib/nbo && chown nbo:nbo /var/lib/nbo && chmod 0700 /var/lib/nbo \
    && rm -rf /src

USER nbo
WORKDIR /var/lib/nbo
# Journals and snapshots: keep them on a volume, never in the container's writable layer.
VOLUME ["/var/lib/nbo"]
EXPOSE 50051

# SERVING only once every campaign is loaded and its kernels are warm (first start compiles).
HEALTHCHECK --interval=15s --timeout=5s --start-period=120s --retries=3 \
    CMD ["/opt/nbo/bin/python", "/opt/nbo/bin/nbo-healthcheck", "127.0.0.1:50051"]

# SIGTERM (docker stop) drains in-flight calls within --grace-seconds, writes snapshots and
# closes journals; docker stop waits 10 s by default, so keep --grace-seconds below that.
STOPSIGNAL SIGTERM
# 0.0.0.0 inside the container: the port is reachable only where `docker run -p` publishes it.
CMD ["/opt/nbo/bin/nbo", "serve", "--config", "/etc/nbo/campaign.toml", "--data-dir", "/var/lib/nbo", "--host", "0.0.0.0", "--port", "50051", "--grace-seconds", "5"]
