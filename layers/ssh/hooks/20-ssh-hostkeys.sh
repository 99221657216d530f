#!/bin/sh
# sshd's start-up needs: host keys unique to this devpod (made once, kept on the
# /etc/ssh/host-keys volume afterwards), the privilege-separation directory
# /run/sshd, the login user's authorized_keys from a secret, and password
# login only when a password secret is given (never a built-in password).
# Options come from /etc/composer/options/ssh.json (the ssh module's options).
set -eu
# shellcheck source=../../base/files/hooklib.sh
. "${COMPOSER_HOOKLIB:-${COMPOSER_ROOT:-}/usr/local/lib/composer/hooklib.sh}"

conf=$root/etc/composer/options/ssh.json
runconf=$root/run/composer/sshd_config.d

# The keys live in /etc/ssh/host-keys, the ssh module's volume: made once, then
# kept by every later start and by a redeploy that keeps the volume, so clients
# never see the devpod's identity change. Only root can read the folder.
keys_dir=$root/etc/ssh/host-keys
if [ -L "$keys_dir" ]; then
    rm -f "$keys_dir"
fi
mkdir -p "$keys_dir"
chown root:root "$keys_dir"
chmod 0700 "$keys_dir"
for type in ed25519 ecdsa rsa; do
    key=$keys_dir/ssh_host_${type}_key
    if [ ! -s "$key" ] || [ ! -s "$key.pub" ] || [ -L "$key" ]; then
        rm -f "$key" "$key.pub"
        ssh-keygen -q -t "$type" -N '' -C "root@$(hostname 2> /dev/null || echo devpod)" -f "$key"
        log "made SSH host key $key"
    fi
done
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
