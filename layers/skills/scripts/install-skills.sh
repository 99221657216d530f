#!/bin/sh
# Copy the chosen skills from the module folder into the user's ~/.claude/skills.
set -eu
. "$COMPOSER_LIB"
src=$COMPOSER_MODULE_DIR/files/skills
user=$(composer_opt user)
home=$(composer_home "$user")
dest="$home/.claude/skills"
mkdir -p "$dest"
composer_opt_lines skills | while IFS= read -r name; do
    if [ ! -d "$src/$name" ]; then
        echo "skills: no skill named '$name' in this module" >&2
        exit 1
    fi
    rm -rf "${dest:?}/$name"
    cp -R "$src/$name" "$dest/$name"
    chmod 0755 "$dest/$name"/tools/*.py
    echo "skills: installed $name"
done
chown -R "$(composer_owner "$user")" "$home/.claude"
