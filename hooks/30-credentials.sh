#!/bin/sh
# Hand each AI tool's API key to the user that runs it, as a JSON config file
# (mode 0600, owned by that user). Secrets come from files in /run/secrets
# (COMPOSER_SECRETS_DIR) or, failing that, environment variables. jq builds
# the JSON from environment variables, so quotes, backslashes, newlines and
# any unicode in a key are escaped correctly and no value passes through a
# command line or shell code. A missing secret or user is skipped.
set -eu
# shellcheck source=../layers/base/files/hooklib.sh
. "${COMPOSER_HOOKLIB:-${COMPOSER_ROOT:-}/usr/local/lib/composer/hooklib.sh}"

# write_config USER TOOL JQ_FILTER: write ~USER/.config/TOOL/config.json from
# the (constant) filter run over the exported COMPOSER_CRED_* variables.
write_config() {
    if ! lookup_user "$1"; then
        log "skipping $2 credentials: no user $1"
        return 0
    fi
    if [ ! -d "$home" ]; then
        log "skipping $2 credentials: $1 has no home $home"
        return 0
    fi
    mkdir_owned "$uid" "$gid" "$home" ".config/$2" 0700 || return 0
    jq -n "$3" | write_owned "$uid" "$gid" "$home/.config/$2/config.json"
    log "wrote ~$1/.config/$2/config.json"
}

# The values reach jq only through its environment (exported here, unset
# after), never through argv.
export COMPOSER_CRED_KEY COMPOSER_CRED_URL

if COMPOSER_CRED_KEY=$(read_secret ANTHROPIC_API_KEY); then
    write_config devuser claude '{api_key: env.COMPOSER_CRED_KEY}'
fi

if COMPOSER_CRED_KEY=$(read_secret GOOGLE_GEMINI_API_KEY); then
    write_config gemini-user gemini '{api_key: env.COMPOSER_CRED_KEY}'
fi

if COMPOSER_CRED_KEY=$(read_secret OPENAI_API_KEY); then
    write_config openai-user openai '{api_key: env.COMPOSER_CRED_KEY}'
fi

# Z.AI speaks Anthropic's API at another base URL: it needs both.
if COMPOSER_CRED_KEY=$(read_secret ANTHROPIC_API_KEY) &&
    COMPOSER_CRED_URL=$(read_secret ANTHROPIC_BASE_URL); then
    write_config zai-user zai '{api_key: env.COMPOSER_CRED_KEY, base_url: env.COMPOSER_CRED_URL}'
fi

unset COMPOSER_CRED_KEY COMPOSER_CRED_URL
