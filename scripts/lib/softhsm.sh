# shellcheck shell=bash
# SoftHSM2 token set-up for the demo, the CLI tests and anyone trying Pkcs11Kms by hand.
# Source this file, then:
#
#   kakunin_softhsm_init "$tmp/hsm" kakunin 1234 so-1234
#   export KAKUNIN_PKCS11_PIN=1234
#   kakunin ca init --dir state --kms pkcs11 --pkcs11-module "$(kakunin_softhsm_module)" --token kakunin
#
# kakunin_softhsm_init DIR LABEL PIN SOPIN
#   Creates DIR/softhsm2.conf with its token store in DIR/tokens, exports SOFTHSM2_CONF pointing
#   at it, and initialises a token labelled LABEL with user PIN PIN and SO PIN SOPIN. If a token
#   with that label already exists in DIR it is kept (the call is idempotent). Returns non-zero
#   with a message on stderr when SoftHSM2 is missing or the token cannot be made.
#
# kakunin_softhsm_module
#   Prints the path of the SoftHSM2 PKCS#11 module ($KAKUNIN_SOFTHSM_MODULE overrides it).

kakunin_softhsm_module() {
    if [[ -n "${KAKUNIN_SOFTHSM_MODULE:-}" ]]; then
        printf '%s\n' "$KAKUNIN_SOFTHSM_MODULE"
        return 0
    fi
    local candidate
    for candidate in /usr/lib/softhsm/libsofthsm2.so \
        /usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so \
        /usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so \
        /usr/local/lib/softhsm/libsofthsm2.so; do
        if [[ -e "$candidate" ]]; then
            printf '%s\n' "$candidate"
            return 0
        fi
    done
    echo "kakunin_softhsm_module: the SoftHSM2 module is not installed (Debian package softhsm2; scripts/test installs it)" >&2
    return 1
}

kakunin_softhsm_init() {
    if [[ $# -ne 4 ]]; then
        echo "usage: kakunin_softhsm_init DIR LABEL PIN SOPIN" >&2
        return 2
    fi
    local dir="$1" label="$2" pin="$3" sopin="$4"
    if [[ -z "$dir" || -z "$label" || -z "$pin" || -z "$sopin" ]]; then
        echo "kakunin_softhsm_init: DIR, LABEL, PIN and SOPIN must not be empty" >&2
        return 2
    fi
    if ! command -v softhsm2-util >/dev/null 2>&1; then
        echo "kakunin_softhsm_init: softhsm2-util is not installed (Debian package softhsm2; scripts/test installs it)" >&2
        return 1
    fi
    kakunin_softhsm_module >/dev/null || return 1

    mkdir -p "$dir/tokens" || return 1
    dir="$(cd "$dir" && pwd)" || return 1
    local conf="$dir/softhsm2.conf"
    if [[ ! -f "$conf" ]]; then
        {
            echo "directories.tokendir = $dir/tokens"
            echo "objectstore.backend = file"
            echo "log.level = ERROR"
            echo "slots.removable = false"
        } >"$conf" || return 1
    fi
    export SOFTHSM2_CONF="$conf"

    # softhsm2-util --show-slots prints "Label:            <label>" for every initialised token.
    # Captured first so that an early-exiting grep cannot turn a found label into a second token.
    local labels
    labels="$(softhsm2-util --show-slots 2>/dev/null |
        sed -n '/^[[:space:]]*Label:/{s/^[[:space:]]*Label:[[:space:]]*//;s/[[:space:]]*$//;p;}')" ||
        labels=""
    if grep -Fqx -- "$label" <<<"$labels"; then
        return 0
    fi
    local out
    if ! out="$(softhsm2-util --init-token --free --label "$label" --pin "$pin" --so-pin "$sopin" 2>&1)"; then
        echo "kakunin_softhsm_init: softhsm2-util --init-token failed: $out" >&2
        return 1
    fi
    return 0
}
