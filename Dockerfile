# The jetkube image: one for every gateway replica and for the one-shot `jetkube pki init` step
# (compose/compose.yaml builds it). The nats-server wheel comes along but is only used when no
# --nats-url is given.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
COPY pyproject.toml ./
COPY actors ./actors
COPY bus ./bus
COPY gateway ./gateway
COPY kinds ./kinds
COPY projections ./projections
RUN pip install . && rm -rf /src

# A fixed non-root uid, so the files `pki init` writes into the shared volumes (mode 0600) are the
# replicas' own. The three mount points exist in the image, so fresh named volumes take this owner.
RUN useradd --system --uid 10001 --home-dir /var/lib/jetkube --shell /usr/sbin/nologin jetkube \
    && mkdir -p /var/lib/jetkube/pki /var/lib/jetkube/probe /var/lib/jetkube/monitoring \
    && chown -R jetkube /var/lib/jetkube
USER 10001
WORKDIR /var/lib/jetkube
EXPOSE 6443
ENTRYPOINT ["jetkube"]
CMD ["serve", "--host", "0.0.0.0", "--data-dir", "/var/lib/jetkube"]
