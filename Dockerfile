# syntax=docker/dockerfile:1
# The sluice processors and CLI. Node 24 runs the TypeScript sources directly
# (type stripping), so the image holds the sources and the runtime
# dependencies only: no compiler, no build step.
FROM node:24.21-slim

# onnxruntime-node's postinstall would download GPU binaries; sluice runs on the
# CPU binary that ships inside the package (the same setting is in .npmrc).
# V8's heap sizing for a stage, as cli/processes.ts sets it (docs/performance.md, Memory): a
# young generation of 8 MiB per semi-space (V8 otherwise sizes it from the
# host's memory, 64 MiB on a 24 GiB host), and an old generation capped below
# 2 GiB, under which V8 lets the heap grow to about twice the live data between
# full collections instead of four times. A duplicate-check bound raised above
# 5 million ids (SLUICE_DEDUP_MAX_IDS) needs the cap raised too. glibc hands
# freed blocks of 128 KiB and more (fetch responses, produce requests) back to
# the system at once instead of keeping them resident: 10-20 MB less per stage.
ENV NODE_ENV=production \
    ONNXRUNTIME_NODE_INSTALL=skip \
    NODE_OPTIONS="--max-semi-space-size=8 --max-old-space-size=2000" \
    MALLOC_MMAP_THRESHOLD_=131072

WORKDIR /app

# Dependencies first, so that a source change does not reinstall them.
COPY package.json package-lock.json .npmrc ./
# Dependencies are patched at install (patches/): kafkajs (docs/performance.md, How a stage commits and reads),
# and the schema registry client and zod, so that a stage does not load what it never uses (docs/performance.md, Memory).
COPY patches ./patches
RUN npm ci --omit=dev \
    && npm cache clean --force

# Owned by root and read-only to the runtime user: a processor writes nothing
# into its own tree.
COPY . .
# The stripped-JavaScript cache bin/sluice.js serves the TypeScript from, so a
# process never loads Node's type stripper; written here, as root, since the
# runtime user may not write the tree (npm ci above ran before the sources).
RUN node bin/fill-strip-cache.js

USER node

# Prometheus scrapes /metrics here when SLUICE_METRICS_PORT=9464.
EXPOSE 9464

ENTRYPOINT ["node", "bin/sluice.js"]
CMD ["--help"]
