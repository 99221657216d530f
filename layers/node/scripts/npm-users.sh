#!/bin/sh
# Per-user npm prefixes (~/.npm-global) holding each user's CLIs, and the
# zai-user environment. Users that do not exist are an error, not a skip.
set -eu
set -f
opts=/run/composer/options.json
cache=$(mktemp -d)
marker="# composer node module"

home_of() {
    if ! entry=$(getent passwd "$1"); then
        echo "node: user '$1' does not exist; add the users module before node" >&2
        exit 1
    fi
    echo "$entry" | cut -d: -f6
}

# Append a block to a shell startup file once, owned by the user.
add_rc() {  # user home file line
    touch "$2/$3"
    grep -qF "$4" "$2/$3" || printf '%s\n%s\n' "$marker" "$4" >> "$2/$3"
    chown "$1:$(id -gn "$1")" "$2/$3"
}

for user in $(jq -r '.user_packages | keys[]' "$opts"); do
    home=$(home_of "$user")
    prefix="$home/.npm-global"
    pkgs=$(jq -r --arg u "$user" '.user_packages[$u][]' "$opts")
    mkdir -p "$prefix"
    if [ -n "$pkgs" ]; then
        echo "node: npm install -g --prefix $prefix" $pkgs
        npm install -g --no-fund --no-audit --cache "$cache" --prefix "$prefix" $pkgs
    fi
    printf 'prefix=%s\n' "$prefix" > "$home/.npmrc"
    chown -R "$user:$(id -gn "$user")" "$prefix" "$home/.npmrc"
    for rc in .zshenv .profile .bashrc; do
        add_rc "$user" "$home" "$rc" 'export PATH="$HOME/.npm-global/bin:$PATH"'
    done
done

zai=$(jq -r '.zai_user' "$opts")
if [ -n "$zai" ]; then
    home=$(home_of "$zai")
    url=$(jq -r '.zai_base_url' "$opts")
    mkdir -p "$home/.config/zai"
    chown "$zai:$(id -gn "$zai")" "$home/.config" "$home/.config/zai"
    for rc in .zshenv .profile .bashrc; do
        add_rc "$zai" "$home" "$rc" "export ANTHROPIC_BASE_URL=\"\${ANTHROPIC_BASE_URL:-$url}\""
        add_rc "$zai" "$home" "$rc" '. /usr/local/share/composer/zai-env.sh'
    done
fi
rm -rf "$cache"
