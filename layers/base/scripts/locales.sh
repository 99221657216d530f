#!/bin/sh
# Enable the configured locales in /etc/locale.gen and generate them.
# Debian's `locales` and Arch's glibc both ship /etc/locale.gen + locale-gen.
set -eu

options=$COMPOSER_OPTIONS
gen=/etc/locale.gen

[ -f "$gen" ] || : > "$gen"

# Each configured line is matched literally (grep -F -x), never as a regex or
# shell text, so option values cannot change what this script does.
jq -r '.locales[]' "$options" | while IFS= read -r line; do
    if grep -q -F -x -e "# $line" -e "#$line" "$gen"; then
        # Uncomment the existing line; awk compares strings, no regex built from data.
        awk -v want="$line" '{ l = $0; sub(/^# ?/, "", l); if (l == want) print l; else print $0 }' \
            "$gen" > "$gen.new"
        mv "$gen.new" "$gen"
    elif ! grep -q -F -x -e "$line" "$gen"; then
        printf '%s\n' "$line" >> "$gen"
    fi
done

locale-gen
