#!/usr/bin/env bash
# Mutation testing of the quantizer and the training loop's data order with cosmic-ray (not run in CI).
#
#   pip install cosmic-ray==8.7.0
#   tools/mutation_test.sh [group ...]      # groups: tools/mutation/<group>.toml; default: reservoir schedule
#
# Each group mutates one module and runs the tests named in its config (pytest -x) once per mutant. The tree
# is copied to a scratch folder first (cosmic-ray edits the files it mutates in place); reports go to
# $MUTATION_OUT (default runs/mutation/<group>.txt, with the surviving mutants' diffs). MUTATION_BUDGET_MIN
# (default 25) caps the wall clock of all groups together; an interrupted group's report counts the mutants
# not reached as pending, and rerunning the script with MUTATION_KEEP=<scratch folder> continues it.
# Why cosmic-ray and not mutmut 3: mutmut skips every decorated function, and the quantizer's core
# (Reservoir.insert, kmeans, ema_apply_: @torch.no_grad()) is decorated. Results: docs/testing.md.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
OUT=${MUTATION_OUT:-$REPO/runs/mutation}
BUDGET=$(( ${MUTATION_BUDGET_MIN:-25} * 60 ))
SETS=("$@")
[ ${#SETS[@]} -eq 0 ] && SETS=(reservoir schedule)
command -v cosmic-ray >/dev/null || { echo "mutation_test.sh: cosmic-ray is not installed (pip install cosmic-ray==8.7.0)" >&2; exit 2; }

if [ -n "${MUTATION_KEEP:-}" ]; then
    WORK=$MUTATION_KEEP
else
    WORK=$(mktemp -d "${TMPDIR:-/tmp}/vq-hf-mutation.XXXXXX")
    mkdir -p "$WORK/tree"
    (cd "$REPO" && git ls-files -co --exclude-standard -z | tar --null -cf - -T -) | tar -xf - -C "$WORK/tree"
fi
mkdir -p "$OUT"
cd "$WORK/tree"
export PYTHONPATH=$WORK/tree/src HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 OMP_NUM_THREADS=1
start=$SECONDS
echo "scratch copy: $WORK"
for g in "${SETS[@]}"; do
    cfg=tools/mutation/$g.toml
    [ -f "$cfg" ] || { echo "mutation_test.sh: no config $cfg" >&2; exit 2; }
    db=$WORK/$g.sqlite
    if [ ! -f "$db" ]; then
        cosmic-ray init "$cfg" "$db"
        cr-filter-operators "$db" "$cfg"
    fi
    left=$(( BUDGET - (SECONDS - start) ))
    if [ "$left" -gt 0 ]; then
        echo "== $g: $(cr-report "$db" | tail -3 | head -1) ($left s of budget left)"
        if ! timeout "$left" nice -n 10 cosmic-ray exec "$cfg" "$db"; then
            echo "== $g: stopped by the time budget"
            # a killed exec may leave its current mutant in the copy: put the module back
            module=$(python3 -c "import sys, tomllib; print(tomllib.load(open(sys.argv[1], 'rb'))['cosmic-ray']['module-path'])" "$cfg")
            cp "$REPO/$module" "$module"
        fi
    fi
    cr-report --show-pending "$db" > "$OUT/$g.txt" || true
    echo "== $g: $(tail -3 "$OUT/$g.txt" | tr '\n' ' ')"
done
