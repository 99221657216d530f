#!/bin/sh
# Host keys must differ per container, so none may be baked into a layer: drop
# whatever the package's install generated; the 20-ssh-hostkeys hook makes
# them at first start (reading this module's options from /etc/composer/options/ssh.json).
set -eu
. "$COMPOSER_LIB"

rm -f /etc/ssh/ssh_host_*key /etc/ssh/ssh_host_*key.pub
mkdir -p /etc/ssh/host-keys
chmod 0700 /etc/ssh/host-keys

# Only the recipe's SSH users may log in: an isolated user who writes an
# authorized_keys of their own still cannot. The names are checked by the
# option's schema (user names only), so they are safe in the config line.
allowed=$(composer_opt_lines allow_users | tr '\n' ' ' | sed 's/ *$//')
[ -n "$allowed" ] || allowed=$(composer_opt user)
printf '# composer ssh module: the allow_users option (or its user)\nAllowUsers %s\n' "$allowed" \
    > /etc/ssh/sshd_config.d/05-allow-users.conf
chmod 0644 /etc/ssh/sshd_config.d/05-allow-users.conf

# Arch's sshd_config has no Include of sshd_config.d (older packages): add it
# at the top so this module's settings apply.
if ! grep -q -E '^[[:space:]]*Include[[:space:]]+/etc/ssh/sshd_config\.d/\*\.conf' /etc/ssh/sshd_config; then
    { echo 'Include /etc/ssh/sshd_config.d/*.conf'; cat /etc/ssh/sshd_config; } > /etc/ssh/sshd_config.new
    mv /etc/ssh/sshd_config.new /etc/ssh/sshd_config
fi
