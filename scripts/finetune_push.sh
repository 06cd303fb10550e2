#!/usr/bin/env bash
# Issue 21, Build item 3: fine-tuning from robot episodes, measured on push (the Accept line: +15 points on average
# over 3 seeds, never lower by more than the band).
#
#   scripts/finetune_push.sh OUT_DIR ALGO CKPT [CKPT ...]   # ALGO: iql, cql or bc (the control); one checkpoint per seed
#
# For each online-trained checkpoint (robot-stack train, e.g. runs/sweep_push_h80/trials/relaxed_none_s0/checkpoint.pt,
# its config.yaml next to it), with the project's own commands only:
#   1. robot-stack export CKPT --out OUT_DIR/TAG/policy.onnx
#   2. robot-stack run sim_robot: the package through the policy server on the sim arm, safety filter and recorder on,
#      EPISODES episodes of loop.max_steps = push's horizon -> OUT_DIR/TAG/robot.zarr (success labelled per episode)
#   3. robot-stack offline offline_push --init CKPT --dataset robot.zarr --dataset push_expert20.zarr algo=ALGO:
#      STEPS updates at batch BATCH, success on EVAL eval episodes before and after (the same layouts)
# TAG is the checkpoint's folder name (relaxed_none_s0). Network (family, group, end, ...) and env view / heightmap
# size come from the checkpoint's config.yaml, so the fine-tuned nets and the stores match the checkpoint. The
# training store, shared by all checkpoints, is the scripted expert without noise (the online run's successful
# demonstrations are not saved): robot-stack collect collect_push episodes=20 noise=0.0 -> OUT_DIR/push_expert20.zarr.
# Every stage whose output exists is skipped, so after a stop the same command resumes (a robot store left short is
# topped up with the episodes it lacks, on the seeds they would have had); other settings want another OUT_DIR.
# Logs: OUT_DIR/finetune.log (this script), OUT_DIR/TAG/*.log (each command), OUT_DIR/helpers.log (the small python
# helpers' stderr). Result: OUT_DIR/RUN.csv, one row per checkpoint, and a table printed.
#
# Environment overrides (defaults in brackets): STEPS [2000] BATCH [32] EVAL [50] EPISODES [50] (robot episodes)
# MAX_STEPS [the task's horizon: 80 for push] RATE_HZ [20] (the sim's control period is 50 ms) EXPERT_EPISODES [20]
# TRAIN_STORE [OUT_DIR/push_expertN.zarr, made as above] (any recorded push store at the checkpoints' view and size)
# OFFLINE_ARGS ["successes_only=true iql.beta=0.5"] (key=value overrides for robot-stack offline; set it empty for
# the launch file's own settings) RUN [finetune_ALGO_STEPS] (the name of the offline run's folder: another RUN keeps a
# variant's results beside the first). The default fine-tunes on the successful episodes only (robot and training
# store), with advantage weights near 1: on push the launch file's IQL (beta 30, every episode) lowered success and
# this raised it (docs/results/offline.md, issue 21 session 6).
# OMP_NUM_THREADS [1]. Seeds: robot episode i of a checkpoint trained with seed s resets with 20000 + 1000 s + i;
# the offline job takes seed s, so its eval layouts are those of that seed's online evaluations.
# Smoke run (16 px checkpoint, seconds; five steps make no success to keep): OFFLINE_ARGS= EPISODES=2 STEPS=2 EVAL=1 \
#   MAX_STEPS=5 EXPERT_EPISODES=2 BATCH=4 scripts/finetune_push.sh /tmp/ft iql /tmp/train_s0/checkpoint.pt
set -euo pipefail

usage() {
    echo "usage: $0 OUT_DIR ALGO CKPT [CKPT ...]   (ALGO: iql, cql or bc)" >&2
    exit 2
}
[[ $# -ge 3 ]] || usage
OUT_DIR=$1
ALGO=$2
shift 2
case "$ALGO" in iql | cql | bc) ;; *) echo "ALGO must be iql, cql or bc, got '$ALGO'" >&2; usage ;; esac

STEPS=${STEPS:-2000}
BATCH=${BATCH:-32}
EVAL=${EVAL:-50}
EPISODES=${EPISODES:-50}
MAX_STEPS=${MAX_STEPS:-}
RATE_HZ=${RATE_HZ:-20}
EXPERT_EPISODES=${EXPERT_EPISODES:-20}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
for name in STEPS BATCH EVAL EPISODES EXPERT_EPISODES; do
    [[ ${!name} =~ ^[0-9]+$ && ${!name} -ge 1 ]] || { echo "$name must be a whole number >= 1, got '${!name}'" >&2; exit 2; }
done
[[ -z $MAX_STEPS || $MAX_STEPS =~ ^[1-9][0-9]*$ ]] || { echo "MAX_STEPS must be a whole number >= 1" >&2; exit 2; }

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if [[ -x $ROOT/.venv/bin/python ]]; then PY=$ROOT/.venv/bin/python; else PY=$(command -v python3); fi
if command -v robot-stack > /dev/null 2>&1; then RS=(robot-stack); else RS=("$PY" -m robot_stack); fi

mkdir -p "$OUT_DIR"
OUT_DIR=$(cd "$OUT_DIR" && pwd)
CKPTS=()
TAGS=()
for ckpt in "$@"; do
    [[ -f $ckpt ]] || { echo "no checkpoint $ckpt" >&2; exit 2; }
    [[ -f $(dirname "$ckpt")/config.yaml ]] || { echo "no config.yaml next to $ckpt" >&2; exit 2; }
    ckpt=$(cd "$(dirname "$ckpt")" && pwd)/$(basename "$ckpt")
    tag=$(basename "$(dirname "$ckpt")")
    for seen in "${TAGS[@]+"${TAGS[@]}"}"; do
        [[ $seen != "$tag" ]] || { echo "two checkpoints in folders named $tag: their outputs would collide" >&2; exit 2; }
    done
    CKPTS+=("$ckpt")
    TAGS+=("$tag")
done
cd "$ROOT"
exec > >(tee -a "$OUT_DIR/finetune.log") 2>&1
echo "== $(date '+%F %T') finetune_push: algo $ALGO, steps $STEPS, batch $BATCH, eval $EVAL, robot episodes $EPISODES," \
    "rate $RATE_HZ Hz, commit $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?'), out $OUT_DIR"

# run LOG CMD...: the command with its output in LOG; on failure the log's end, and stop
run_logged() {
    local log=$1
    shift
    echo "   \$ $* > $log"
    if ! "$@" > "$log" 2>&1; then
        echo "FAILED (log $log):" >&2
        tail -n 30 "$log" >&2
        exit 1
    fi
}

# quiet CMD...: the command with its stderr (robosuite's import warnings) in OUT_DIR/helpers.log, shown if it fails
quiet() {
    if ! "$@" 2>> "$OUT_DIR/helpers.log"; then
        echo "FAILED: $* (stderr in $OUT_DIR/helpers.log):" >&2
        tail -n 20 "$OUT_DIR/helpers.log" >&2
        exit 1
    fi
}

# checkpoint_words CONFIG: seed, task, view, heightmap size, horizon, then the network.K=V overrides, one a line
checkpoint_words() {
    "$PY" - "$1" "$MAX_STEPS" << 'EOF'
import json, sys

import sim
from robot_stack import config
from robot_stack.jobs.train import TrainConfig
from sim.env import TASK_DEFAULTS

cfg = config.load(TrainConfig, sys.argv[1])
env = sim.env_config(cfg.task, cfg.env)  # the run's env with SimConfig's defaults filled in
horizon = int(sys.argv[2] or env.horizon or TASK_DEFAULTS[cfg.task].horizon)
print(cfg.seed, cfg.task, env.view, env.heightmap_size, horizon, sep="\n")
for key, value in cfg.network.items():
    print(f"network.{key}={value if isinstance(value, str) else json.dumps(value, separators=(',', ':'))}")
EOF
}

# episodes STORE: how many episodes the store has committed (0 when there is none)
episodes() {
    "$PY" - "$1" << 'EOF'
import os, sys
from robot_stack.recorder import EpisodeDataset

print(EpisodeDataset(sys.argv[1]).episode_stats()["episodes"] if os.path.exists(sys.argv[1]) else 0)
EOF
}

VIEW=""
SIZE=""
EXPERT=${TRAIN_STORE:-$OUT_DIR/push_expert$EXPERT_EPISODES.zarr}
read -r -a OFFLINE_EXTRA <<< "${OFFLINE_ARGS-successes_only=true iql.beta=0.5}"
for i in "${!CKPTS[@]}"; do
    ckpt=${CKPTS[$i]}
    tag=${TAGS[$i]}
    dir=$OUT_DIR/$tag
    mkdir -p "$dir"
    words=$(quiet checkpoint_words "$(dirname "$ckpt")/config.yaml")
    mapfile -t info <<< "$words"
    seed=${info[0]} task=${info[1]} view=${info[2]} size=${info[3]} horizon=${info[4]}
    net=("${info[@]:5}")
    [[ $task == push ]] || { echo "$ckpt was trained on task '$task', not push" >&2; exit 1; }
    if [[ -z $VIEW ]]; then
        VIEW=$view SIZE=$size
    elif [[ $view != "$VIEW" || $size != "$SIZE" ]]; then
        echo "$ckpt is at view $view, $size px; the first checkpoint at $VIEW, $SIZE px (one shared expert store)" >&2
        exit 1
    fi
    echo "== $tag: seed $seed, view $view, $size px, ${net[*]}"

    # the training store, once: the scripted expert without noise, as the online run's demonstrations
    have=$(quiet episodes "$EXPERT")
    if [[ -n ${TRAIN_STORE:-} ]] && ((have == 0)); then
        echo "TRAIN_STORE $TRAIN_STORE holds no episodes" >&2
        exit 1
    fi
    if [[ -z ${TRAIN_STORE:-} ]] && ((have < EXPERT_EPISODES)); then
        echo "-- expert store $EXPERT: $have of $EXPERT_EPISODES episodes, recording the rest"
        run_logged "$OUT_DIR/push_expert$EXPERT_EPISODES.$have.log" "${RS[@]}" collect collect_push \
            "episodes=$((EXPERT_EPISODES - have))" "seed=$have" noise=0.0 "sim.view=$VIEW" "sim.heightmap_size=$SIZE" \
            "out=$EXPERT"
    fi

    # 1. export
    if [[ ! -f $dir/policy.onnx ]]; then
        echo "-- export"
        run_logged "$dir/export.log" "${RS[@]}" export "$ckpt" --out "$dir/policy.part.onnx"
        mv "$dir/policy.part.onnx" "$dir/policy.onnx"
    fi

    # 2. the sim robot through the policy server, recorded; a short store is topped up on the seeds it lacks
    robot=$dir/robot.zarr
    have=$(quiet episodes "$robot")
    if ((have < EPISODES)); then
        echo "-- sim robot: $have of $EPISODES episodes recorded, running the rest ($horizon steps each, $RATE_HZ Hz)"
        t0=$(date +%s)
        run_logged "$dir/robot.$have.log" "${RS[@]}" run sim_robot arm.task=push "arm.seed=$((20000 + 1000 * seed + have))" \
            "arm.sim.view=$view" "arm.sim.heightmap_size=$size" "policy.package=$dir/policy.onnx" \
            "record.path=$robot" "loop.episodes=$((EPISODES - have))" "loop.max_steps=$horizon" \
            "loop.rate_hz=$RATE_HZ" < /dev/null
        echo $(($(date +%s) - t0 + $(cat "$dir/robot.seconds" 2>/dev/null || echo 0))) > "$dir/robot.seconds"
        grep -E "episode\(s\)," "$dir/robot.$have.log" | tail -n 1 | sed 's/^/   /' || true
    fi

    # 3. fine-tune offline from the checkpoint on the robot store mixed with the expert store
    name=${RUN:-finetune_${ALGO}_${STEPS}}
    if [[ ! -f $dir/$name/summary.json ]]; then
        echo "-- offline $ALGO, $STEPS updates, batch $BATCH, $EVAL eval episodes before and after${OFFLINE_EXTRA[*]:+, ${OFFLINE_EXTRA[*]}}"
        t0=$(date +%s)
        run_logged "$dir/$name.log" "${RS[@]}" offline offline_push --init "$ckpt" --dataset "$robot" \
            --dataset "$EXPERT" "algo=$ALGO" "env.view=$view" "env.heightmap_size=$size" "${net[@]}" \
            "steps=$STEPS" "batch_size=$BATCH" "eval_episodes=$EVAL" "seed=$seed" "out_dir=$dir" "name=$name" \
            progress=false "${OFFLINE_EXTRA[@]}"
        echo $(($(date +%s) - t0)) > "$dir/$name.seconds"
        grep "success before fine-tuning" "$dir/$name.log" | sed 's/^/   /' || true
    fi
done

# the table: one row per checkpoint
quiet "$PY" - "$OUT_DIR" "$ALGO" "${RUN:-finetune_${ALGO}_${STEPS}}" "${#CKPTS[@]}" "${TAGS[@]}" "${CKPTS[@]}" << 'EOF'
import json, sys
from pathlib import Path

import yaml
from robot_stack.recorder import EpisodeDataset
from robot_stack.tables import write_rows

out, algo, name, n = Path(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4])
tags, ckpts = sys.argv[5:5 + n], sys.argv[5 + n:5 + 2 * n]


def seconds(path: Path) -> int | str:  # a stage's wall seconds; blank when an earlier run left no timing
    return int(path.read_text()) if path.exists() else ""


rows = []
for tag, ckpt in zip(tags, ckpts):
    d = out / tag
    seed = yaml.safe_load(open(Path(ckpt).parent / "config.yaml")).get("seed", 0)
    store = EpisodeDataset(d / "robot.zarr")
    robot = store.episode_stats()
    metas = [store.episode_meta(int(i)) for i in store.episode_ids]
    summary = json.loads((d / name / "summary.json").read_text())
    before, after = summary["eval_before"]["success_rate"], summary["eval"]["success_rate"]
    rows.append({"seed": seed, "checkpoint": ckpt, "robot_episodes": robot["episodes"],
                 "robot_successes": robot["successes"], "robot_success": robot["successes"] / robot["episodes"],
                 "before": before, "after": after, "gain": after - before,
                 "eval_episodes": summary["eval"]["episodes"], "transitions": summary["transitions"],
                 "steps": summary["config"]["steps"], "algo": algo, "datasets": " ".join(summary["datasets"]),
                 "train_seconds": round(summary["train_seconds"], 1),
                 "seconds": seconds(d / f"{name}.seconds"), "robot_seconds": seconds(d / "robot.seconds"),
                 # control periods the policy missed / the arm held on the sim robot (nonzero: a slower RATE_HZ)
                 "robot_missed_deadlines": sum(int(m.get("missed_deadlines") or 0) for m in metas),
                 "robot_held": sum(int(m.get("held") or 0) for m in metas)})
path = write_rows(out / f"{name}.csv", rows)
print(f"\n{path}")
print(f"{'seed':>4} {'checkpoint':<24} {'robot':>10} {'before':>6} {'after':>6} {'gain':>6} {'steps':>6} {'algo':>4} "
      f"{'seconds':>7}")
for r in rows:
    robot = f"{r['robot_successes']}/{r['robot_episodes']}"
    print(f"{r['seed']:>4} {Path(r['checkpoint']).parent.name:<24} {robot:>10} {r['before']:>6.2f} {r['after']:>6.2f} "
          f"{r['gain']:>+6.2f} {r['steps']:>6} {r['algo']:>4} {str(r['seconds']):>7}")
gains = [r["gain"] for r in rows]
print(f"mean gain {sum(gains) / len(gains):+.2f} over {len(gains)} checkpoint(s) (min {min(gains):+.2f}), "
      f"{rows[0]['eval_episodes']} eval episodes each")
EOF
