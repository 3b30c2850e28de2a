#!/usr/bin/env bash
# `make image`: build deploy/Dockerfile without Docker or Docker Hub, then start the
# image's entrypoint by chroot and talk to it.
#   1. a Debian bookworm base with python3, by debootstrap (cached in $WORK/rootfs),
#      imported as localhost/satchel-base:bookworm;
#   2. buildah builds deploy/Dockerfile with BASE set to it (--isolation chroot, vfs);
#   3. the image is mounted and its ENTRYPOINT runs by chroot as its USER, with its ENV,
#      on a loopback port: its HEALTHCHECK command, /healthz, /readyz, /metrics and an
#      upload must answer, and SIGTERM must end it with 0.
# Needs root, debootstrap, buildah, podman (Debian packages) and the network to Debian's
# mirror and PyPI. Not what CI runs.
set -euo pipefail
cd "$(dirname "$0")/.."
WORK="${WORK:-/var/tmp/satchel-image}"
BASE=localhost/satchel-base:bookworm
IMAGE=localhost/satchel:latest
STORE=(--storage-driver vfs)
PORT="${PORT:-18080}"
log() { echo "[image] $*" >&2; }

mkdir -p "$WORK"
if [ ! -x "$WORK/rootfs/usr/bin/python3" ]; then
    log "debootstrap: Debian bookworm with python3 into $WORK/rootfs"
    rm -rf "$WORK/rootfs"
    debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
        bookworm "$WORK/rootfs" http://deb.debian.org/debian > "$WORK/debootstrap.log"
fi
log "importing the base as $BASE"
tar -C "$WORK/rootfs" -c . | podman "${STORE[@]}" import - "$BASE" > /dev/null

# Where the network's TLS is intercepted by a local authority (as on these machines),
# pip in the build trusts the host's certificates. Build-time volumes are not part of
# the image: it keeps Debian's own.
printf '[global]\ncert = /etc/ssl/certs/host-ca.crt\n' > "$WORK/pip.conf"
log "building $IMAGE from deploy/Dockerfile"
buildah "${STORE[@]}" bud --isolation chroot --layers=false --format docker \
    --volume /etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/host-ca.crt:ro \
    --volume "$WORK/pip.conf:/etc/pip.conf:ro" \
    --build-arg "BASE=$BASE" -f deploy/Dockerfile -t "$IMAGE" . > "$WORK/build.log" 2>&1

container=$(buildah "${STORE[@]}" from "$IMAGE")
trap 'kill "$pid" 2>/dev/null || true; buildah "${STORE[@]}" rm "$container" > /dev/null' EXIT
root=$(buildah "${STORE[@]}" mount "$container")
config=$(buildah "${STORE[@]}" inspect --type image "$IMAGE")
user=$(jq -r '.Docker.config.User' <<< "$config")
mapfile -t env < <(jq -r '.Docker.config.Env[]' <<< "$config")
mapfile -t entrypoint < <(jq -r '.Docker.config.Entrypoint[]' <<< "$config")
# the HEALTHCHECK's command (after "CMD"), pointed at the port used here
mapfile -t health < <(jq -r '.Docker.config.Healthcheck.Test[1:][]' <<< "$config" | sed "s/:8080\//:$PORT\//")
uid=$(chroot "$root" id -u "$user")
gid=$(chroot "$root" id -g "$user")
log "image: user $user ($uid:$gid), entrypoint ${entrypoint[*]}, $(du -sh "$root" | cut -f1)"

log "starting the entrypoint by chroot on 127.0.0.1:$PORT"
env -i "${env[@]}" SATCHEL_HOST=127.0.0.1 SATCHEL_PORT="$PORT" HOME=/data \
    chroot --userspec="$uid:$gid" "$root" "${entrypoint[@]}" > "$WORK/run.log" 2>&1 &
pid=$!
for _ in $(seq 1 100); do
    curl -sf "http://127.0.0.1:$PORT/healthz" > /dev/null && break
    sleep 0.2
done
env -i "${env[@]}" chroot --userspec="$uid:$gid" "$root" "${health[@]}"
log "the HEALTHCHECK command passes"
curl -sSf "http://127.0.0.1:$PORT/healthz"; echo
curl -sSf "http://127.0.0.1:$PORT/readyz"; echo
curl -sSf "http://127.0.0.1:$PORT/metrics" | grep '^satchel_build_info'
curl -sSf -X POST --data-binary 'hello from the image' "http://127.0.0.1:$PORT/files/" | jq -c '{id, size, sha256}'
kill -TERM "$pid"
wait "$pid" && status=0 || status=$?
log "SIGTERM: exit $status; the log:"
sed 's/^/    /' "$WORK/run.log" >&2
[ "$status" = 0 ]
log "ok: $IMAGE built, served and drained"
