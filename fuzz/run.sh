#!/usr/bin/env bash
# Builds the fuzz targets and runs each for a bounded time, one after
# another, then prints runs, executions per second and whether it crashed.
#
#   fuzz/run.sh [SECONDS_PER_TARGET] [TARGET...]     (default: 60, all)
#
# FUZZ_SANITIZER=none skips AddressSanitizer (faster, catches less).
# Logs: fuzz/logs/<target>.log. New corpus entries go to
# fuzz/target/corpus/<target> (not in git); the committed seeds in
# fuzz/corpus/<target> are only read. A crash leaves its input in
# fuzz/artifacts/<target>/ and makes this script exit 1.
set -uo pipefail
cd "$(dirname "$0")"

seconds=${1:-60}
shift || true
sanitizer=${FUZZ_SANITIZER:-address}
# cargo-fuzz passes -Z flags; RUSTC_BOOTSTRAP lets a stable toolchain take them.
export RUSTC_BOOTSTRAP=1

if [ $# -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo fuzz list)
fi

build=(-O --debug-assertions --sanitizer "$sanitizer")
nice -n 10 cargo fuzz build "${build[@]}" || exit 2

mkdir -p logs
failed=0
printf '%-16s %8s %12s %10s  %s\n' target seconds runs exec/s result
for target in "${targets[@]}"; do
    log="logs/$target.log"
    corpus=("target/corpus/$target")
    mkdir -p "${corpus[0]}"
    [ -d "corpus/$target" ] && corpus+=("corpus/$target")
    # Longer inputs where the limits under test are long (8,000-character
    # post bodies, 4,096-byte tokens).
    case "$target" in
        json_bodies | access_token) max_len=20000 ;;
        *) max_len=4096 ;;
    esac
    nice -n 10 cargo fuzz run "${build[@]}" "$target" "${corpus[@]}" -- \
        -max_total_time="$seconds" -max_len="$max_len" -timeout=10 -rss_limit_mb=3072 \
        -print_final_stats=1 >"$log" 2>&1
    status=$?
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    if [ "$status" -eq 0 ]; then
        result="no crash"
    else
        failed=1
        artifact=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -1)
        result="CRASH (exit $status) ${artifact:-see $log}"
    fi
    printf '%-16s %8s %12s %10s  %s\n' "$target" "$seconds" "${runs:-?}" "${rate:-?}" "$result"
done
exit "$failed"
