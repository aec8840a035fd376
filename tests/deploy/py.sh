#!/usr/bin/env bash
# py.sh: runs a Python test script of this package with the machine's python3
# (as tests/binaries does); arguments: the script, then its arguments.
exec python3 "$@"
