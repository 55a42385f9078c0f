#!/usr/bin/env bash
# The main job on embedded data: filled in as the task plugins land.
set -euo pipefail
BIN=${BIN:-.venv/bin}
"$BIN/textlab" plugins
