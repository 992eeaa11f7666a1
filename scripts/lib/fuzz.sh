# shellcheck shell=bash
# kakunin_fuzz BUILD_DIR SECONDS: builds the libFuzzer targets with clang in BUILD_DIR and runs
# each for SECONDS from a corpus of valid inputs. Returns non-zero if any target finds a crash
# (the crashing input is kept in BUILD_DIR/fuzz-artifacts/).
kakunin_fuzz() {
    local dir="$1" seconds="$2" corpus target status=0
    CXX=clang++ cmake -S "$KAKUNIN_ROOT" -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=Release \
        -DKAKUNIN_FUZZ=ON -DKAKUNIN_BUILD_TESTS=OFF -DKAKUNIN_BUILD_BENCH=OFF \
        -DKAKUNIN_BUILD_EXAMPLES=OFF -DKAKUNIN_BUILD_CLI=OFF -DKAKUNIN_INSTALL=OFF >/dev/null
    cmake --build "$dir" -j "$(nproc)"
    corpus="$dir/fuzz-corpus"
    mkdir -p "$corpus" "$dir/fuzz-artifacts"
    "$dir/fuzz/fuzz_seeds" "$corpus"
    for target in fuzz_scope_json fuzz_scope_extension fuzz_certificate fuzz_audit_line fuzz_crl; do
        echo "fuzzing $target for ${seconds}s"
        if ! "$dir/fuzz/$target" -max_total_time="$seconds" -print_final_stats=1 \
            -artifact_prefix="$dir/fuzz-artifacts/$target-" "$corpus/$target" \
            >"$dir/fuzz-$target.log" 2>&1; then
            echo "FAILED: $target found a crash; see $dir/fuzz-$target.log and $dir/fuzz-artifacts/"
            tail -40 "$dir/fuzz-$target.log"
            status=1
        else
            grep -E "^stat::number_of_executed_units" "$dir/fuzz-$target.log" || true
        fi
    done
    return $status
}
