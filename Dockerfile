# syntax=docker/dockerfile:1
# clerk-gateway: one container, configured by environment variables (see .env.example and docs/deploy.md).
# Two stages: "build" turns the project and every dependency into wheels; the final stage installs only
# those wheels (--no-index: nothing is fetched or compiled there) and has no compiler or build tools.

FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
RUN python -m pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
# Where the source lives; pass --build-arg SOURCE_URL=<repository URL> when building a release image.
ARG SOURCE_URL=unknown
LABEL org.opencontainers.image.title="clerk-gateway" \
      org.opencontainers.image.description="Async backend-for-frontend gateway: verifies Clerk tokens and forwards to Hasura, Nhost or Fauna" \
      org.opencontainers.image.source="${SOURCE_URL}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="0.1.0"
# The wheels are bind-mounted from the build stage, so they never become a layer of this image.
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    python -m pip install --no-cache-dir --no-index /wheels/*.whl
# A numeric, non-root user; /var/lib/clerk-gateway (mint mode's signing key) is the only place it writes.
RUN groupadd --system --gid 10001 gateway \
 && useradd --system --uid 10001 --gid 10001 --home-dir /app --no-create-home --shell /usr/sbin/nologin gateway \
 && install -d -o 10001 -g 10001 -m 0700 /var/lib/clerk-gateway
# /app is empty and root-owned: no .env is read unless one is mounted there on purpose.
WORKDIR /app
VOLUME ["/var/lib/clerk-gateway"]
USER 10001:10001
ENV GATEWAY_HOST=0.0.0.0 \
    GATEWAY_PORT=8000 \
    GATEWAY_LOG_FORMAT=json \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s \
  CMD ["python", "-c", "import os, sys, urllib.request; url = 'http://127.0.0.1:' + os.environ.get('GATEWAY_PORT', '8000') + '/healthz'; sys.exit(0 if urllib.request.urlopen(url, timeout=2).status == 200 else 1)"]
ENTRYPOINT ["clerk-gateway"]
CMD ["serve"]
