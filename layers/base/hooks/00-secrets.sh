#!/bin/sh
# Make the secrets folder root's alone before anything else runs. podman mounts
# `--secret NAME` as /run/secrets/NAME mode 0444, and kube play's Secret volume
# gives 0644 on podman 4.3: every user could read every secret. The files stay
# as they are; the folder becomes root:root 0700, so no other user reaches them.
# The 30-credentials hook then hands each user a copy of their own secrets only.
# A folder that cannot be changed (a read-only Secret volume) is covered with a
# private tmpfs holding a copy (needs CAP_SYS_ADMIN, which the turboflow Pod has);
# when that fails too and a secret is readable by others, the devpod does not
# start: the hook says which secrets and how to mount them instead.
set -eu
# shellcheck source=../../base/files/hooklib.sh
. "${COMPOSER_HOOKLIB:-${COMPOSER_ROOT:-}/usr/local/lib/composer/hooklib.sh}"

dir=$secrets_dir
[ -d "$dir" ] || exit 0

private() {  # true when no user but root can read a secret of the folder
    [ "$(stat -L -c %u "$dir")" = 0 ] || return 1
    case $(stat -L -c %a "$dir") in
        *00) return 0 ;;  # no search right for group and others
    esac
    [ -z "$(find -L "$dir" -mindepth 1 -type f \( -perm /044 -o ! -user 0 \) -print)" ]
}

if chown root:root "$dir" 2> /dev/null && chmod 0700 "$dir" 2> /dev/null; then
    exit 0
fi
if private; then
    exit 0
fi

# Read-only and readable by others: a root-only tmpfs with a copy, bound over it.
copy=$root/run/composer/secrets
mkdir -p "$root/run/composer"
mkdir -p -m 0700 "$copy"
if mount -t tmpfs -o mode=0700,uid=0,gid=0,size=4m composer-secrets "$copy" 2> /dev/null; then
    if cp -R "$dir"/. "$copy"/ && chmod -R go-rwx "$copy" &&
        mount --bind "$copy" "$dir" 2> /dev/null; then
        mount -o remount,bind,ro "$dir" 2> /dev/null || true  # read-only, as it was
        log "$dir is read-only and readable by other users: covered it with a root-only copy"
        exit 0
    fi
    umount "$copy" || true
fi
rmdir "$copy" 2> /dev/null || true

exposed=$(find -L "$dir" -mindepth 1 -type f -perm /004 ! -path '*/..*' -exec basename {} \; | tr '\n' ' ' | sed 's/ $//')
log "refusing to start: $dir is read-only and every user can read ${exposed:-its secrets}."
log "mount secrets root-only: podman run --secret NAME,type=mount,mode=0400; a Secret volume" \
    "with defaultMode 0400 (podman >= 4.4); or a hostPath folder of mode 0700 (docs/kube.md)"
exit 1
