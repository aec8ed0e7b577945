# The Tandem worker (the brains): Node 20 and this repository, run through tsx as `tandem worker`.
# Build: docker compose build worker   (or docker build -t tandem-worker .)
# The hands are not in this image: the worker creates sandbox containers on the Docker engine it is given, through
# the mounted /var/run/docker.sock or DOCKER_HOST. Access to that engine is root-equivalent on its host, so the
# worker runs as root here; put the hands on a separate Docker host (DOCKER_HOST) to keep them apart from the brains.
FROM node:20-bookworm-slim

WORKDIR /app
ENV NODE_ENV=production
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force
COPY tsconfig.json ./
COPY bin ./bin
COPY src ./src
COPY sandbox ./sandbox
COPY examples ./examples
COPY schema ./schema

# Prometheus metrics (TANDEM_METRICS_ADDRESS) are served here when set.
EXPOSE 9464
ENTRYPOINT ["node", "bin/tandem"]
CMD ["worker"]
