#!/bin/sh
# Builds the base image of acme-sidecar and of its demo stack where no image can be pulled
# (CI, offline machines): debootstraps a minimal Debian root file system from this host's apt
# mirror, adds the host's locally added CA certificates (so apt and pip inside
# `docker build --network host` verify TLS behind an intercepting proxy) and `docker import`s it.
# Where images can be pulled this is not needed: the Dockerfiles default to debian:bookworm-slim.
#
# Usage (as root, with debootstrap and the docker CLI installed):
#   helper-scripts/build-base-image.sh [tag]          default tag: acme-sidecar-base:bookworm
# then
#   docker build --network host --build-arg BASE_IMAGE=acme-sidecar-base:bookworm -t acme-sidecar .
#   BASE_IMAGE=acme-sidecar-base:bookworm docker compose up -d
#
# Environment:
#   SUITE       Debian suite (default: bookworm)
#   MIRROR      Debian mirror (default: the one this host's apt uses for SUITE; with none, the
#               script stops and says so: no mirror is built in)
#   SECURITY_MIRROR  the SUITE-security repository written into the image's apt sources
#               (default: the one this host's apt uses; with none, the image has no such entry)
#   ROOTFS_TAR  a cache: when this tarball exists it is imported as it is (no debootstrap);
#               when it does not, the new root fs is also saved there
#   DOCKER_HOST the docker engine to import into (docker's default when unset)
set -eu

tag=${1:-acme-sidecar-base:bookworm}
suite=${SUITE:-bookworm}
packages=python3,python3-venv,ca-certificates
rootfs_tar=${ROOTFS_TAR:-}

say() { echo "build-base-image: $*" >&2; }

# The first repository this host's apt knows for a suite (apt-get indextargets reads both
# sources.list and deb822 .sources files), by the suite's name in the sources or its codename:
# bookworm, or bookworm-security, whose repository often lives under another URI. Empty when
# there is none.
host_mirror() {
    # shellcheck disable=SC2016 # $(...) are apt's format fields, not shell expansions
    apt-get indextargets --format '$(REPO_URI) $(RELEASE) $(CODENAME)' 'Identifier: Packages' \
        2>/dev/null \
        | awk -v suite="$1" '$2 == suite || $3 == suite { sub("/$", "", $1); print $1; exit }'
}

if [ -n "$rootfs_tar" ] && [ -f "$rootfs_tar" ]; then
    say "importing the cached root fs $rootfs_tar as $tag"
    docker import --change 'CMD ["bash"]' --message "debootstrap $suite ($packages)" \
        "$rootfs_tar" "$tag" >/dev/null
    exit 0
fi

mirror=${MIRROR:-$(host_mirror "$suite")}
mirror=${mirror%/}
if [ -z "$mirror" ]; then
    say "no Debian mirror for $suite in this host's apt sources: add the one this machine may" \
        "use to /etc/apt/sources.list or /etc/apt/sources.list.d/, or give MIRROR=<its URL>"
    exit 1
fi
updates=$(host_mirror "$suite-updates")
security=${SECURITY_MIRROR:-$(host_mirror "$suite-security")}
if [ -z "$security" ]; then
    say "no $suite-security repository in this host's apt sources (nor SECURITY_MIRROR):" \
        "the image's apt sources will have none"
fi

if [ "$(id -u)" -ne 0 ]; then
    say "debootstrap needs root; run as root (or give ROOTFS_TAR=<an existing tarball>)"
    exit 1
fi
command -v debootstrap >/dev/null || { say "debootstrap is missing: apt-get install debootstrap"; exit 1; }
command -v docker >/dev/null || { say "the docker CLI is missing: apt-get install docker.io"; exit 1; }

work=$(mktemp -d /tmp/acme-base-XXXXXX)
# an interrupted debootstrap can leave proc/sys mounted inside the target: unmount first
cleanup() {
    # shellcheck disable=SC2013 # mount points here have no blanks
    for point in $(awk -v root="$work/" 'index($2, root) == 1 { print $2 }' /proc/self/mounts | sort -r); do
        umount -l "$point" 2>/dev/null || true
    done
    rm -rf "$work"
}
trap cleanup EXIT INT TERM
root=$work/root

say "debootstrap --variant=minbase $suite from $mirror (about a minute)"
if ! debootstrap --variant=minbase --include="$packages" "$suite" "$root" "$mirror" \
        >"$work/debootstrap.log" 2>&1; then
    tail -n 20 "$work/debootstrap.log" >&2
    say "debootstrap failed (the last lines are above)"
    exit 1
fi

# apt sources like the official debian image (the release, its updates and security updates),
# each from where this host's apt takes it
rm -f "$root/etc/apt/sources.list"
stanza() {
    printf 'Types: deb\nURIs: %s\nSuites: %s\nComponents: main\n' "$1" "$2"
    printf 'Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n'
}
{
    if [ "$updates" = "$mirror" ]; then
        stanza "$mirror" "$suite $suite-updates"
    else
        stanza "$mirror" "$suite"
        if [ -n "$updates" ]; then echo; stanza "$updates" "$suite-updates"; fi
    fi
    if [ -n "$security" ]; then echo; stanza "$security" "$suite-security"; fi
} >"$root/etc/apt/sources.list.d/debian.sources"

# like Debian's official images: package scripts never try to start services inside a build
printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
chmod 755 "$root/usr/sbin/policy-rc.d"

# the host's locally added CAs (e.g. of an intercepting proxy), registered by ca-certificates
if ls /usr/local/share/ca-certificates/*.crt >/dev/null 2>&1; then
    mkdir -p "$root/usr/local/share/ca-certificates"
    cp /usr/local/share/ca-certificates/*.crt "$root/usr/local/share/ca-certificates/"
    chroot "$root" update-ca-certificates >/dev/null 2>&1 \
        || { say "update-ca-certificates failed in the new root fs"; exit 1; }
fi

# trimmed like Debian's "slim" images: nothing here is needed at run time
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* \
    "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/* \
    "$root"/usr/share/locale/*

tarball=$work/rootfs.tar
tar --numeric-owner --xattrs -C "$root" -cf "$tarball" \
    --exclude=./dev/* --exclude=./proc/* --exclude=./sys/* .

if [ -n "$rootfs_tar" ]; then
    # written next to its final name, then renamed: a reader never sees half a tarball
    mkdir -p "$(dirname "$rootfs_tar")"
    cp "$tarball" "$rootfs_tar.partial.$$"
    mv "$rootfs_tar.partial.$$" "$rootfs_tar"
    say "root fs saved as $rootfs_tar"
fi

say "importing as $tag"
docker import --change 'CMD ["bash"]' --message "debootstrap $suite ($packages)" \
    "$tarball" "$tag" >/dev/null
say "done: build with --build-arg BASE_IMAGE=$tag (or BASE_IMAGE=$tag docker compose up -d)"
