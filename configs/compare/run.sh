#!/usr/bin/env bash
# Compare base, best_of_n, milr (reference), milr (rloo) and anti_reward on one config at equal
# reward-call budgets: one run folder per method under ROOT, TensorBoard under ROOT/tensorboard,
# the benchmark's official score when the reward is its evaluator, and ROOT/report.html.
#
#   configs/compare/run.sh ROOT [runner options]          (default options: configs/tiny.yaml, the tiny random model)
#   configs/compare/run.sh out/cmp --config configs/janus_pro_7b_geneval.yaml --data.end 50
#
# Runner options go to every run (a main config first, then any option, e.g. --model.monitors).
# SCORE=<geneval|t2i_compbench|wise> re-scores every run with that benchmark's own models instead.
# PYTHON picks the interpreter (default: python).
set -euo pipefail
root=${1:?usage: configs/compare/run.sh ROOT [runner options]}
shift
[ $# -gt 0 ] || set -- --config configs/tiny.yaml
python=${PYTHON:-python}
here=$(cd "$(dirname "$0")" && pwd)
runner="$here/../../train_free_runner.py"

resolved=$("$python" "$runner" "$@" --print_config)
field() { "$python" -c 'import sys, yaml; m = yaml.safe_load(sys.stdin)["model"]; print(eval(sys.argv[1]))' "$1" <<<"$resolved"; }
max_steps=$(field 'm["max_steps"]')
reward=$(field 'm["reward"]["class_path"]')
rloo_steps=$(( max_steps / 2 - 1 > 1 ? max_steps / 2 - 1 : 1 ))  # 1 + 2 (s + 1) = max_steps + 1 calls when max_steps is even
echo "compare: budget $(( max_steps + 1 )) reward calls per prompt (rloo: $(( 1 + 2 * (rloo_steps + 1) )), max_steps $rloo_steps)"

methods=(milr base best_of_n milr_rloo anti_reward)  # the report's differences are against the first
for method in "${methods[@]}"; do
  extra=()
  [ "$method" != milr_rloo ] || extra=(--model.max_steps "$rloo_steps")
  echo "compare: $method"
  "$python" "$runner" "$@" --config "$here/$method.yaml" "${extra[@]}" \
    --output_dir "$root/$method" --tensorboard_root "$root/tensorboard"
done

runs=("${methods[@]/#/$root/}")
bench=${SCORE:-$(sed -n 's/^rewards\.\(geneval\|t2i_compbench\|wise\)\..*/\1/p' <<<"$reward")}
from_details=$([ -n "${SCORE:-}" ] && echo false || echo true)  # the reward is the evaluator: its stored verdicts
for run in "${runs[@]}"; do
  case "$bench" in
    geneval) "$python" -m rewards.geneval "$run" --from_details "$from_details" --out "$run/results.jsonl" ;;
    t2i_compbench) "$python" -m rewards.t2i_compbench "$run" --from_details "$from_details" ;;
    wise) "$python" -m rewards.wise "$run" ;;
    *) echo "compare: $reward is no benchmark's evaluator, so no official score (SCORE=<benchmark> re-scores)"; break ;;
  esac
done
"$python" -m milr.report "${runs[@]}" --out "$root"
