#!/bin/sh
# Copy the chosen skills from the module folder into the user's ~/.claude/skills.
set -eu
opts=/run/composer/options.json
src=/run/composer/module/files/skills
user=$(jq -r '.user' "$opts")
if ! entry=$(getent passwd "$user"); then
    echo "skills: user '$user' does not exist; add the users module before skills" >&2
    exit 1
fi
home=$(echo "$entry" | cut -d: -f6)
group=$(id -gn "$user")
dest="$home/.claude/skills"
mkdir -p "$dest"
jq -r '.skills[]' "$opts" | while IFS= read -r name; do
    if [ ! -d "$src/$name" ]; then
        echo "skills: no skill named '$name' in this module" >&2
        exit 1
    fi
    rm -rf "${dest:?}/$name"
    cp -R "$src/$name" "$dest/$name"
    chmod 0755 "$dest/$name"/tools/*.py
    echo "skills: installed $name"
done
chown -R "$user:$group" "$home/.claude"
