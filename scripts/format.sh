#!/usr/bin/env bash
# format.sh: clang-format every C file of the project (the root .clang-format);
# with --check, change nothing and list the files that are not formatted.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
mapfile -t files < <(git ls-files '*.c' '*.h' | grep -v '^third_party/')
if [ "${1:-}" = "--check" ]; then
    bad=0
    for f in "${files[@]}"; do
        if ! clang-format --dry-run --Werror "$f" >/dev/null 2>&1; then
            echo "not formatted: $f"
            bad=1
        fi
    done
    exit $bad
fi
clang-format -i "${files[@]}"
