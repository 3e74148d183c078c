#!/usr/bin/env bash
# Dead code, by vulture (settings in pyproject.toml [tool.vulture]), in two passes:
#   1. agent/ and metrics/ must be used by the product (the agent, the simulator, the benchmarks):
#      code that only its tests use is dead, so tests/ is left out of this pass;
#   2. everything, tests included: the simulator and the benchmarks are test harnesses too, so what
#      the test tiers use of them is used; what nothing uses is dead.
# True false positives go in hack/vulture_whitelist.py, each with where the use is.
set -euo pipefail
cd "$(dirname "$0")/.."
VULTURE="${VULTURE:-.venv/bin/vulture}"
status=0
product=$("$VULTURE" agent metrics simulator bench hack/vulture_whitelist.py | grep -E '^(agent|metrics)/' || true)
if [[ -n "$product" ]]; then
    echo "$product"
    echo "deadcode: the lines above are used by no product code (tests do not count): use them or delete them"
    status=1
fi
"$VULTURE" || status=1
exit "$status"
