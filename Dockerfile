# syntax=docker/dockerfile:1
# The sluice processors and CLI. Node 24 runs the TypeScript sources directly
# (type stripping), so the image holds the sources and the runtime
# dependencies only: no compiler, no build step.
FROM node:24.21-slim

# onnxruntime-node's postinstall would download GPU binaries; sluice runs on the
# CPU binary that ships inside the package (the same setting is in .npmrc).
# A young generation of 16 MiB per semi-space: V8 otherwise sizes it from the
# host's memory (64 MiB on a 24 GiB host, 128 MiB of resident memory held for
# garbage a stage frees within one batch).
ENV NODE_ENV=production \
    ONNXRUNTIME_NODE_INSTALL=skip \
    NODE_OPTIONS=--max-semi-space-size=16

WORKDIR /app

# Dependencies first, so that a source change does not reinstall them.
COPY package.json package-lock.json .npmrc ./
# kafkajs is patched at install (patches/): coordinator caching in transactions, linear message grouping.
COPY patches ./patches
RUN npm ci --omit=dev \
    && npm cache clean --force

# Owned by root and read-only to the runtime user: a processor writes nothing
# into its own tree.
COPY . .

USER node

# Prometheus scrapes /metrics here when SLUICE_METRICS_PORT=9464.
EXPOSE 9464

ENTRYPOINT ["node", "bin/sluice.ts"]
CMD ["--help"]
