#!/bin/sh
# Create the configured users, their groups, sudo rules and switch helpers.
# Everything comes from the options file ($COMPOSER_OPTIONS) as data (read with jq);
# no option value is ever evaluated as shell code. No password is set: accounts
# stay locked for password login until a start-up hook sets one from a secret.
set -eu

options=$COMPOSER_OPTIONS
etc=/etc/composer

mkdir -p "$etc"

# users.json: the users list with every default filled in; the start-up hooks
# (10-directories, 30-credentials, 40-permissions) read it at each start.
# `has()` instead of `//` because `false // true` would be true.
jq '[.users[] | {
        name,
        uid,
        gid: (if has("gid") then .gid else .uid end),
        shell: (.shell // "/usr/bin/zsh"),
        sudo: (if has("sudo") then .sudo else false end),
        groups: (.groups // []),
        home_mode: (.home_mode // "0750"),
        workspace: (if has("workspace") then .workspace else true end),
        dirs: (.dirs // []),
        home: ("/home/" + .name)
    }]' "$options" > "$etc/users.json"
chmod 0644 "$etc/users.json"

group_exists() { getent group "$1" > /dev/null 2>&1; }

# One line per user: name uid gid shell home_mode workspace. Names and
# shells are restricted by the module's schema to characters without spaces.
jq -r '.[] | [.name, .uid, .gid, .shell, .home_mode, .workspace] | @tsv' \
    "$etc/users.json" > /tmp/composer-users.tsv

# Supplementary groups first, so useradd -G can use them. A listed group that
# does not exist yet (wheel, docker, supervisor on Debian; sudo on Arch) is
# created as a system group rather than skipped: the recipe said it wants it.
jq -r '[.[].groups[]] | unique | .[]' "$etc/users.json" | while IFS= read -r g; do
    group_exists "$g" || groupadd --system "$g"
done

while IFS="$(printf '\t')" read -r name uid gid shell mode workspace; do
    if [ ! -x "$shell" ]; then
        echo "users: shell $shell of $name is not installed" >&2
        exit 1
    fi
    grep -q -x -F "$shell" /etc/shells 2>/dev/null || printf '%s\n' "$shell" >> /etc/shells

    # The primary group is named like the user and has the given gid.
    if group_exists "$name"; then
        have=$(getent group "$name" | cut -d: -f3)
        if [ "$have" != "$gid" ]; then
            echo "users: group $name exists with gid $have, wanted $gid" >&2
            exit 1
        fi
    elif getent group "$gid" > /dev/null 2>&1; then
        echo "users: gid $gid (for $name) is taken by group $(getent group "$gid" | cut -d: -f1)" >&2
        exit 1
    else
        groupadd --gid "$gid" "$name"
    fi

    groups=$(jq -r --arg n "$name" '.[] | select(.name == $n) | .groups | join(",")' "$etc/users.json")
    if id "$name" > /dev/null 2>&1; then
        have=$(id -u "$name")
        if [ "$have" != "$uid" ]; then
            echo "users: user $name exists with uid $have, wanted $uid" >&2
            exit 1
        fi
        usermod --gid "$gid" --shell "$shell" ${groups:+--append --groups "$groups"} "$name"
    else
        if getent passwd "$uid" > /dev/null 2>&1; then
            echo "users: uid $uid (for $name) is taken by $(getent passwd "$uid" | cut -d: -f1)" >&2
            exit 1
        fi
        useradd --create-home --home-dir "/home/$name" --uid "$uid" --gid "$gid" \
            --shell "$shell" ${groups:+--groups "$groups"} "$name"
    fi
    chmod "$mode" "/home/$name"
    if [ "$workspace" = "true" ]; then
        install -d -o "$uid" -g "$gid" -m 0755 "/home/$name/workspace"
    fi
done < /tmp/composer-users.tsv
rm -f /tmp/composer-users.tsv

# sudo rules: one file, checked by visudo before it is installed.
rules=$(mktemp)
printf '# Written by composer users module.\n' > "$rules"
jq -r '.[] | select(.sudo) | .name + " ALL=(ALL:ALL) NOPASSWD: ALL"' "$etc/users.json" >> "$rules"
targets=$(jq -r '[.helpers[]] | unique | join(",")' "$options")
if [ -n "$targets" ]; then
    # The helpers' callers may switch to exactly the helpers' target users,
    # even when they lack full sudo.
    jq -r --arg t "$targets" '.helpers_for // ["devuser"] | .[] | . + " ALL=(" + $t + ") NOPASSWD: ALL"' \
        "$options" >> "$rules"
fi
visudo -c -q -f "$rules"
install -m 0440 -o root -g root "$rules" /etc/sudoers.d/composer-users
rm -f "$rules"

# Switch helpers: each command is a link to one generic script that looks its
# target up in helpers.json by its own name.
jq '.helpers // {}' "$options" > "$etc/helpers.json"
chmod 0644 "$etc/helpers.json"
jq -r '.helpers // {} | keys[]' "$options" | while IFS= read -r cmd; do
    ln -sf /usr/local/lib/composer/as-user "/usr/local/bin/$cmd"
done

# What user programs make is not for the other users: logins (SSH, su, sudo -i) get umask
# 027 from pam_umask (with a private group per user, login.defs makes that 007); services
# get it from supervisord (the 45-logs hook writes umask=027 per program).
if [ -f /etc/login.defs ]; then
    sed -i 's/^UMASK[[:space:]].*/UMASK\t\t027/' /etc/login.defs
    grep -q '^UMASK' /etc/login.defs || printf 'UMASK\t\t027\n' >> /etc/login.defs
fi
if [ -f /etc/pam.d/common-session ] && ! grep -q pam_umask /etc/pam.d/common-session; then
    echo 'session optional pam_umask.so' >> /etc/pam.d/common-session
fi
