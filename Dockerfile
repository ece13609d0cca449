# gochat in a container. Build: docker build -t gochat .
# Run:   docker run -d --name gochat -p 8080:8080 -p 8081:8081 -p 8443:8443 -p 127.0.0.1:9100:9100 \
#          -v gochat-data:/data -v /etc/gochat/certs:/certs:ro gochat
# Check: docker run --rm -v gochat-data:/data gochat --check-config
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# A fixed non-root uid, so files on the volumes can be given to it from the host.
RUN groupadd --system --gid 10001 gochat \
    && useradd --system --uid 10001 --gid gochat --home-dir /data --no-create-home \
       --shell /usr/sbin/nologin gochat \
    && mkdir -p /data /certs \
    && chown gochat:gochat /data

WORKDIR /src
COPY pyproject.toml README.md LICENSE ./
COPY gochat ./gochat
# The postgres extra brings psycopg, for GOCHAT_DB=postgresql://... (compose.yaml).
RUN pip install ".[postgres]" && rm -rf /src

# The database and the certificates live on volumes; the chat listens on all
# addresses inside the container. The metrics endpoint too, which is why only
# the container sets 0.0.0.0: publish 9100 on the host's loopback (see above).
# The certificate is not named here: a path the operator names must exist, and
# the defaults (certs/server.crt and certs/server.key, relative to the working
# directory /) are the /certs volume, so an empty /certs means TLS off.
ENV GOCHAT_HOST=0.0.0.0 \
    GOCHAT_DB=/data/gochat.db \
    GOCHAT_METRICS_ADDR=0.0.0.0:9100
VOLUME ["/data", "/certs"]
EXPOSE 8080 8081 8443 8444 9100

USER gochat
WORKDIR /

HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import os, sys, urllib.request; port = os.environ.get('GOCHAT_METRICS_ADDR', '9100').rsplit(':', 1)[-1]; sys.exit(0 if urllib.request.urlopen(f'http://127.0.0.1:{port}/healthz', timeout=4).status == 200 else 1)"]

# SIGTERM: goodbye to every user, output drained, exit 0 (docker stop waits 10 s).
STOPSIGNAL SIGTERM
ENTRYPOINT ["gochat"]
