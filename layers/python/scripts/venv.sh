#!/bin/sh
# Create /opt/venv and install the packaging tools and the enabled package groups.
set -eu
opts=$COMPOSER_OPTIONS
venv=/opt/venv
list=$(mktemp)

pip_install() {
    # Requirement specs one per line in $list; passed as separate arguments.
    set --
    while IFS= read -r spec; do
        [ -n "$spec" ] && set -- "$@" "$spec"
    done < "$list"
    [ $# -gt 0 ] || return 0
    echo "python: pip install $*"
    "$venv/bin/pip" install --no-cache-dir --upgrade "$@"
}

python3 -m venv "$venv"
jq -r '.tools[]' "$opts" > "$list"
pip_install
jq -r '[ (if .data_science then .data_science_packages else [] end),
         (if .ml then .ml_packages else [] end),
         (if .dev then .dev_packages else [] end),
         (if .utilities then .utilities_packages else [] end),
         .extra_packages ] | add | .[]' "$opts" > "$list"
pip_install
rm -f "$list"

group=$(jq -r '.group' "$opts")
if [ -n "$group" ]; then
    chgrp -R "$group" "$venv"
    chmod -R g+w "$venv"
    find "$venv" -type d -exec chmod g+s {} +
fi
"$venv/bin/python" --version
