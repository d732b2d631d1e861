# Tessera's container image: a static binary on a distroless base, run as
# a non-root user. Build with `docker build -t tessera .`.

# Build stage: a static binary (Pebble and gRPC are pure Go).
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/tessera ./cmd/tessera && \
    CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/tessctl ./cmd/tessctl

# Run stage: no shell, no package manager; uid 65532 ("nonroot").
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/tessera /out/tessctl /usr/local/bin/
USER 65532:65532
# Client (etcd API, /metrics, /health) and peer ports, as etcd.
EXPOSE 2379 2380
VOLUME ["/var/lib/tessera"]
ENTRYPOINT ["/usr/local/bin/tessera"]
CMD ["--data-dir=/var/lib/tessera/data", "--listen-client-urls=http://0.0.0.0:2379", "--listen-peer-urls=http://0.0.0.0:2380"]
