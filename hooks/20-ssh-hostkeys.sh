#!/bin/sh
# sshd's start-up needs: host keys unique to this container (made once, kept
# in the container's /etc/ssh afterwards), the privilege-separation directory
# /run/sshd, the login user's authorized_keys from a secret, and password
# login only when a password secret is given (never a built-in password).
# Options come from /etc/composer/options/ssh.json (the ssh module's options).
set -eu
# shellcheck source=../layers/base/files/hooklib.sh
. "${COMPOSER_HOOKLIB:-${COMPOSER_ROOT:-}/usr/local/lib/composer/hooklib.sh}"

conf=$root/etc/composer/options/ssh.json
runconf=$root/run/composer/sshd_config.d

mkdir -p "$root/etc/ssh"
# -A makes every missing key type; -f prefixes the paths (a test tree).
ssh-keygen -A ${root:+-f "$root"}
mkdir -p "$root/run/sshd"
chmod 0755 "$root/run/sshd"
mkdir -p "$runconf"
rm -f "$runconf/password.conf"

[ -f "$conf" ] || exit 0
user=$(jq -r '.user' "$conf")
keys_secret=$(jq -r '.authorized_keys_secret' "$conf")
password_secret=$(jq -r '.password_secret' "$conf")

if ! lookup_user "$user"; then
    log "no user $user; no keys or password set"
    exit 0
fi

if keys=$(read_secret "$keys_secret"); then
    if [ -d "$home" ] && mkdir_owned "$uid" "$gid" "$home" .ssh 0700; then
        printf '%s\n' "$keys" | write_owned "$uid" "$gid" "$home/.ssh/authorized_keys"
        log "installed authorized_keys for $user"
    fi
fi

if password=$(read_secret "$password_secret"); then
    nl='
'
    case $password in
        # chpasswd reads user:password lines; a newline would start another line.
        *"$nl"*) log "$password_secret has a newline inside; password not set" ;;
        *)
            printf '%s:%s\n' "$user" "$password" | ${COMPOSER_CHPASSWD:-chpasswd}
            printf '# written by 20-ssh-hostkeys: %s is set\nPasswordAuthentication yes\n' \
                "$password_secret" > "$runconf/password.conf"
            log "password login enabled for $user"
            ;;
    esac
fi
