#!/bin/sh
# Per-user npm prefixes (~/.npm-global) holding each user's CLIs, and the
# zai-user environment. Users that do not exist are an error, not a skip.
set -eu
set -f
. "$COMPOSER_LIB"
opts=$COMPOSER_OPTIONS
cache=$(mktemp -d)
marker="# composer node module"

# Append a block to a shell startup file once, owned by the user.
add_rc() {  # user home file line
    touch "$2/$3"
    grep -qF "$4" "$2/$3" || printf '%s\n%s\n' "$marker" "$4" >> "$2/$3"
    chown "$(composer_owner "$1")" "$2/$3"
}

for user in $(composer_opt_lines user_packages); do
    home=$(composer_home "$user")
    prefix="$home/.npm-global"
    pkgs=$(jq -r --arg u "$user" '.user_packages[$u][]' "$opts")
    mkdir -p "$prefix"
    if [ -n "$pkgs" ]; then
        echo "node: npm install -g --prefix $prefix" $pkgs
        npm install -g --no-fund --no-audit --cache "$cache" --prefix "$prefix" $pkgs
    fi
    printf 'prefix=%s\n' "$prefix" > "$home/.npmrc"
    chown -R "$(composer_owner "$user")" "$prefix" "$home/.npmrc"
    for rc in .zshenv .profile .bashrc; do
        add_rc "$user" "$home" "$rc" 'export PATH="$HOME/.npm-global/bin:$PATH"'
    done
done

zai=$(composer_opt zai_user)
if [ -n "$zai" ]; then
    home=$(composer_home "$zai")
    url=$(composer_opt zai_base_url)
    mkdir -p "$home/.config/zai"
    chown "$(composer_owner "$zai")" "$home/.config" "$home/.config/zai"
    for rc in .zshenv .profile .bashrc; do
        add_rc "$zai" "$home" "$rc" "export ANTHROPIC_BASE_URL=\"\${ANTHROPIC_BASE_URL:-$url}\""
        add_rc "$zai" "$home" "$rc" '. /usr/local/share/composer/zai-env.sh'
    done
fi
rm -rf "$cache"
