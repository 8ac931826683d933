#!/bin/sh
# Build a local base image (Debian + python3 + venv + CA certificates) with debootstrap from
# the Debian mirror apt already uses, and import it into podman: the image build then needs
# no container registry. Usage: deploy/image/debian-base.sh [image-name]
set -eu
image=${1:-localhost/livestream-exporter-base:bookworm}
suite=$(. /etc/os-release && echo "${VERSION_CODENAME:-bookworm}")
# the first Debian mirror apt is configured with (deb822 sources first, then sources.list)
mirror=$(sed -n 's/^URIs:[[:space:]]*\([^[:space:]]*debian\)\/*$/\1/p' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -n1)
[ -n "$mirror" ] || mirror=$(sed -n 's/^deb[[:space:]]\{1,\}\(\[[^]]*\][[:space:]]\{1,\}\)\{0,1\}\([^[:space:]]*debian\)\/*[[:space:]].*/\2/p' /etc/apt/sources.list 2>/dev/null | head -n1)
[ -n "$mirror" ] || mirror=http://deb.debian.org/debian
root=$(mktemp -d "${TMPDIR:-/tmp}/livestream-base.XXXXXX")
trap 'rm -rf "$root"' EXIT
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates "$suite" "$root" "$mirror" >"$root.log" 2>&1 \
  || { tail -n 20 "$root.log" >&2; rm -f "$root.log"; exit 1; }
rm -f "$root.log"
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* \
       "$root"/usr/share/doc "$root"/usr/share/man "$root"/usr/share/locale "$root"/usr/share/info
tar -C "$root" -c . | podman import --change 'CMD ["/usr/bin/python3"]' - "$image" >/dev/null
echo "$image"
