# A Debian 12 (bookworm) arm64 root run under qemu-user-static: sourced by deploy/check-arm64.sh.
#
# Why Debian 12: Raspberry Pi OS bookworm is built on it (same glibc 2.36, same Python 3.11.2). The
# root is bare on purpose (debootstrap minbase, no libGL, no glib), like a Pi OS Lite image: what
# the [device] extra needs must come from its wheels. Building it takes 4-6 min of network + CPU,
# so it is cached (ARM64_ROOT, outside the repo) and reused while its recipe is unchanged.
# Every function fails loudly: a machine that cannot emulate arm64 fails the check, never skips it.

ARM64_ROOT=${ARM64_ROOT:-/var/cache/edge-affectsr/arm64-root}
ARM64_SUITE=bookworm
ARM64_PACKAGES=python3,python3-venv,python3-pip,ca-certificates
ARM64_RECIPE="debootstrap --arch=arm64 --variant=minbase --include=$ARM64_PACKAGES $ARM64_SUITE"
ARM64_STAMP=.edge-affectsr-root  # inside the root: the recipe it was built with

die() { echo "check-arm64: FAILED: $*" >&2; exit 1; }
say() { echo "check-arm64: $*" >&2; }

need_root() {
    [ "$(id -u)" = 0 ] || die "run as root (debootstrap, chroot, binfmt_misc need it): sudo make check-arm64"
}

# qemu-user-static, binfmt-support and debootstrap from the host's apt when missing.
ensure_tools() {
    command -v debootstrap >/dev/null && command -v qemu-aarch64-static >/dev/null && command -v update-binfmts >/dev/null \
        && return
    command -v apt-get >/dev/null || die "no apt-get: install qemu-user-static, binfmt-support and debootstrap by hand"
    say "installing qemu-user-static binfmt-support debootstrap"
    { apt-get update -qq && apt-get install -y -qq qemu-user-static binfmt-support debootstrap >/dev/null; } \
        || die "apt-get could not install qemu-user-static binfmt-support debootstrap"
}

# The kernel must hand aarch64 ELF files to qemu (binfmt_misc): without it, venvs and pip, which
# start processes through symlinks, cannot run in the root at all.
ensure_binfmt() {
    local fs=/proc/sys/fs/binfmt_misc
    [ -e "$fs/register" ] || mount -t binfmt_misc binfmt_misc "$fs" 2>/dev/null \
        || die "cannot mount binfmt_misc at $fs (an unprivileged container?); arm64 emulation needs it: \
run on a host or a privileged container, or enable it there: mount -t binfmt_misc binfmt_misc $fs"
    [ -e "$fs/qemu-aarch64" ] || update-binfmts --enable qemu-aarch64 >/dev/null 2>&1 \
        || die "update-binfmts --enable qemu-aarch64 failed (is qemu-user-static installed?)"
    grep -q '^enabled' "$fs/qemu-aarch64" 2>/dev/null || die "binfmt entry qemu-aarch64 is not enabled ($fs/qemu-aarch64)"
    grep -q '^flags:.*F' "$fs/qemu-aarch64" \
        || die "binfmt entry qemu-aarch64 lacks the F (fix-binary) flag, so qemu is not found inside the chroot"
}

# The mirror the host's apt uses (ARM64_MIRROR overrides), else Debian's own.
apt_mirror() {
    local uri
    uri=${ARM64_MIRROR:-$(awk '/^URIs:/ && $2 !~ /security/ {print $2; exit}' /etc/apt/sources.list.d/*.sources 2>/dev/null)}
    uri=${uri:-$(awk '$1 == "deb" && $3 == "bookworm" {print $2; exit}' /etc/apt/sources.list 2>/dev/null)}
    echo "${uri:-http://deb.debian.org/debian}"
}

# True when something is mounted at or under $1 (never delete such a folder: /dev may be bound in).
mounted_under() {
    local dir
    dir=$(realpath -m "$1")
    awk -v d="$dir" '$2 == d || index($2, d "/") == 1 {found = 1} END {exit !found}' /proc/self/mounts
}

root_is_current() {
    [ -f "$ARM64_ROOT/$ARM64_STAMP" ] && [ "$(cat "$ARM64_ROOT/$ARM64_STAMP")" = "$ARM64_RECIPE" ]
}

# Reuse the cached root when its recipe matches; else debootstrap a new one beside it and swap it in.
ensure_root() {
    if root_is_current; then
        say "reusing the arm64 root at $ARM64_ROOT"
        return
    fi
    local partial="$ARM64_ROOT.partial" mirror
    mirror=$(apt_mirror)
    for dir in "$partial" "$ARM64_ROOT"; do
        ! mounted_under "$dir" || die "$dir has mounts under it (a previous run still inside?); unmount them first"
    done
    rm -rf "$partial"
    mkdir -p "$(dirname "$ARM64_ROOT")"
    say "building the arm64 root (4-6 min): $ARM64_RECIPE $partial $mirror"
    # shellcheck disable=SC2086
    $ARM64_RECIPE "$partial" "$mirror" >"$partial.log" 2>&1 \
        || { tail -20 "$partial.log" >&2; die "debootstrap failed (log: $partial.log); is $mirror reachable?"; }
    echo "$ARM64_RECIPE" >"$partial/$ARM64_STAMP"
    rm -rf "$ARM64_ROOT" && mv "$partial" "$ARM64_ROOT" && rm -f "$partial.log"
}

# What pip needs inside: name resolution, the host's extra CA certificates (a TLS-inspecting proxy),
# the system pip configuration. Not the user's own pip config: its local wheel folders and file://
# indexes hold x86_64 wheels.
configure_network() {
    cp /etc/resolv.conf /etc/hosts "$ARM64_ROOT/etc/"
    mkdir -p "$ARM64_ROOT/usr/local/share/ca-certificates"
    local changed=0 crt
    for crt in /usr/local/share/ca-certificates/*.crt; do
        [ -f "$crt" ] || continue
        cmp -s "$crt" "$ARM64_ROOT$crt" || { cp "$crt" "$ARM64_ROOT$crt"; changed=1; }
    done
    [ "$changed" = 0 ] || in_root update-ca-certificates >/dev/null
    [ ! -f /etc/pip.conf ] || cp /etc/pip.conf "$ARM64_ROOT/etc/pip.conf"
    [ ! -d /etc/xdg/pip ] || { mkdir -p "$ARM64_ROOT/etc/xdg" && cp -r /etc/xdg/pip "$ARM64_ROOT/etc/xdg/"; }
}

# The host's PIP_* settings (and proxies) as env assignments, less local wheel folders and file:// indexes.
pip_env() {
    local name value kept
    while IFS='=' read -r name value; do
        case "$name" in
            PIP_FIND_LINKS|PIP_NO_INDEX) continue ;;
            PIP_*|http_proxy|https_proxy|no_proxy|HTTP_PROXY|HTTPS_PROXY|NO_PROXY) ;;
            *) continue ;;
        esac
        kept=$(tr ' ' '\n' <<<"$value" | grep -v '^file:' | paste -sd' ' -)
        [ -z "$kept" ] || printf '%s=%s\n' "$name" "$kept"
    done < <(env)
}

ARM64_MOUNTS=()

mount_root() {
    mount -t proc proc "$ARM64_ROOT/proc" && ARM64_MOUNTS+=("$ARM64_ROOT/proc")
    local dir
    for dir in sys dev; do
        mount --rbind "/$dir" "$ARM64_ROOT/$dir" && mount --make-rslave "$ARM64_ROOT/$dir" && ARM64_MOUNTS+=("$ARM64_ROOT/$dir")
    done
}

umount_root() {
    local mnt
    for mnt in "${ARM64_MOUNTS[@]}"; do
        umount -R "$mnt" 2>/dev/null || umount -R -l "$mnt" 2>/dev/null || say "could not unmount $mnt"
    done
    ARM64_MOUNTS=()
}

# Run a command inside the root with a clean environment (the host's PATH and venv must not leak in).
in_root() {
    local env_args=()
    mapfile -t env_args < <(pip_env)
    chroot "$ARM64_ROOT" /usr/bin/env -i HOME=/root LANG=C.UTF-8 PATH=/usr/sbin:/usr/bin:/sbin:/bin \
        "${env_args[@]}" "$@"
}
