#!/usr/bin/env bash
# A GPU lease as one unit of a longer campaign (docs/gpu.md): train the model that would ship, bring it back.
#
#   scripts/gpu_campaign.sh pack      here, before the call: .gpu/ = ../shared/gpu/bundle.sh's site bundle, the
#                                     split's first val subject and as many of its training subjects as fit in the
#                                     64 MiB that travel with a call (never a test subject), and RESUME's training
#                                     checkpoint of the last lease if there is one (its generator weights alone, as
#                                     fp16 for init_from, when the whole checkpoint leaves room for fewer than
#                                     MIN_TRAIN training subjects)
#   scripts/gpu_campaign.sh run       on the device (carry [".gpu"]): unpack into a temporary folder, then the
#                                     stages of scripts/gpu_campaign.py within TOTAL_S seconds; results under $OUT
#   scripts/gpu_campaign.sh bench     on the device (carry [".gpu"]): python -m benchmarks.bench on CUDA within
#                                     90 s, $OUT/bench.md (a call of its own, after the campaign's)
#   scripts/gpu_campaign.sh unpack DIR  here, after the call: DIR's fp16 checkpoints into runs/gpu_campaign/ and its
#                                     training checkpoint parts joined into RESUME (the previous one kept as .prev)
#   scripts/gpu_campaign.sh dry-run --data DIR [--out DIR] [--resume CKPT]
#                                     here, on the CPU: the same packing (a tiny site bundle from this Python's
#                                     omegaconf, DIR's *_T1w.nii.gz), unpacking and stages, with tiny networks
#                                     (--resume: a dry run's own training checkpoint, joined by unpack, carried
#                                     as pack carries RESUME)
#
# Environment: PY (the Python; default python3, or .venv/bin/python for dry-run), SPLIT (default
# experiments/splits/ds002748.tsv), TOTAL_S (run: wall seconds for the whole call, default 540), RESUME (default
# runs/gpu_campaign/slice_resnet_unshuffle.last.ckpt; RESUME=runs/capacity/unshuffle/checkpoints/last.ckpt: the CPU
# campaign goes on on the GPU), MIN_TRAIN (default 4).
set -euo pipefail
START=$SECONDS
CALLER=$PWD  # --data and --out are relative to it
cd "$(dirname "${BASH_SOURCE[0]}")/.."
REPO=$PWD
SPLIT=${SPLIT:-experiments/splits/ds002748.tsv}
MAIN=$(sed -n 's/^MAIN = "\(.*\)"$/\1/p' scripts/gpu_campaign.py)  # the model that would ship: gpu_campaign.py's MAIN
RESUME=${RESUME:-runs/gpu_campaign/$MAIN.last.ckpt}
BENCH_ARGS=(--device cuda --deadline 85 --batches 48)  # bench: every row within ~90 s on the H200, + batch 48
LIMIT=$((64 * 1024 * 1024))        # what travels with a call: the working tree + .gpu
MARGIN=$((1024 * 1024))            # kept free under LIMIT
SUBJECT_BYTES=$((2 * 1024 * 1024)) # one ds002748 subject in data.tar.xz (~1.9 MiB)
MIN_TRAIN=${MIN_TRAIN:-4}  # training subjects a lease needs beside a whole training checkpoint (the lease of 2026-12-04 had 4)
die() { echo "error: $*" >&2; exit 2; }
[[ -n $MAIN ]] || die "scripts/gpu_campaign.py has no line MAIN = \"...\": the model to train is unknown"
CLEANUP=()  # temporary folders, removed on exit
trap 'rm -rf "${CLEANUP[@]}"' EXIT

subjects() {  # subjects N_TRAIN: the split's first val subject and its first N_TRAIN train subjects (no test subject)
    awk -F'\t' -v n="$1" '
        NR == 1 { for (i = 1; i <= NF; i++) col[$i] = i; if (!col["subject"] || !col["split"]) exit 1; next }
        $col["split"] == "val" && !val { val = $col["subject"] "\n" }
        $col["split"] == "train" && k < n { train = train $col["subject"] "\n"; k++ }
        END { printf "%s%s", val, train }' "$SPLIT" || die "$SPLIT: needs tab-separated columns subject, split"
}

tree_bytes() {  # what the device tool sends besides .gpu: tracked and untracked-not-ignored files
    git ls-files -co --exclude-standard -z | xargs -0 stat -c %s 2>/dev/null | awk '{s += $1} END {print s + 0}'
}

extra_bytes() {  # extra_bytes DIR: the resume checkpoint or the initial weights in DIR, if any
    cat "$1"/resume.ckpt "$1"/init.ckpt 2>/dev/null | wc -c
}

free_bytes() {  # free_bytes DIR: what LIMIT - MARGIN leaves beside the working tree and DIR's site bundle
    echo $((LIMIT - MARGIN - $(tree_bytes) - $(stat -c %s "$1/site.tar.xz")))
}

carry_resume() {  # carry_resume DIR: RESUME into DIR as resume.ckpt if MIN_TRAIN training subjects still fit beside
    # it (and the site bundle DIR/site.tar.xz, the tree, the val subject), else its generator weights as fp16 init.ckpt
    local size
    rm -f "$1/resume.ckpt" "$1/init.ckpt"
    [[ -f $RESUME ]] || return 0
    size=$(stat -c %s "$RESUME")
    if (($(free_bytes "$1") - size >= ($(subjects 0 | wc -l) + MIN_TRAIN) * SUBJECT_BYTES)); then
        cp "$RESUME" "$1/resume.ckpt"
        echo "resuming $RESUME"
    else
        "${PY:-.venv/bin/python}" -m inpaint.export "$RESUME" -o "$1/init.ckpt" --dtype fp16 > /dev/null \
            || die "$RESUME: its generator weights could not be exported (see above)"
        echo "$RESUME ($((size / 1024 / 1024)) MiB) leaves room for fewer than $MIN_TRAIN training" \
             "subjects: its generator weights travel as fp16 ($(($(stat -c %s "$1/init.ckpt") / 1024)) KiB, init_from;" \
             "the optimiser starts afresh)"
    fi
}

carried() {  # carried DIR: bytes of the working tree + DIR's bundles; fails over LIMIT - MARGIN
    local total=$(($(tree_bytes) + $(stat -c %s "$1"/site.tar.xz) + $(stat -c %s "$1"/data.tar.xz) + $(extra_bytes "$1")))
    echo "carried: $((total / 1024 / 1024)) MiB of 64 (tree + $1/site.tar.xz + $1/data.tar.xz + resume checkpoint)"
    ((total <= LIMIT - MARGIN))
}

pack() {  # .gpu/ for the real call, with ../shared/gpu/bundle.sh
    local bundle=../shared/gpu/bundle.sh list n_train
    [[ -x $bundle ]] || die "$bundle not found: the site and data bundles are built by it"
    mkdir -p "$(git rev-parse --git-path info)"  # bundle.sh adds /.gpu/ to .git/info/exclude
    [[ -f .gpu/site.tar.xz ]] || "$bundle" 0 /dev/null  # the site bundle alone (built once)
    carry_resume .gpu
    # one more training subject than the estimate: the loop drops one while the carry is over
    n_train=$((($(free_bytes .gpu) - $(extra_bytes .gpu)) / SUBJECT_BYTES \
        - $(subjects 0 | wc -l) + 1))
    ((n_train >= 1)) || die "no room for a training subject beside the site bundle and the tree"
    list=$(mktemp)
    CLEANUP+=("$list")
    while :; do
        subjects "$n_train" > "$list"
        "$bundle" "$(wc -l < "$list")" "$list"
        carried .gpu && break
        ((n_train > 1)) || die "even one training subject does not fit; make the tree smaller"
        n_train=$((n_train - 1))
    done
    echo "subjects in .gpu/data.tar.xz ($n_train for training): $(tr "\n" " " < "$list")"
    echo 'then call the device tool (the script unpacks the bundles itself: no command prefix needed):'
    echo '    run(command="bash scripts/gpu_campaign.sh run", carry=[".gpu"], timeout_s=600)'
    echo 'and, right after it on the warm machine, the bench:'
    echo '    run(command="bash scripts/gpu_campaign.sh bench", carry=[".gpu"], timeout_s=150)'
}

unpack() {  # unpack DIR: what a campaign call brought back, into runs/gpu_campaign/ and RESUME
    local from=$1 dest=runs/gpu_campaign parts expected
    [[ -f $from/report.md ]] || die "$from: no report.md; give the folder the campaign call's files came back to"
    mkdir -p "$dest"
    for f in "$from"/*.ckpt; do [[ -f $f ]] && cp "$f" "$dest/$(basename "$f" .ckpt).fp16.ckpt"; done
    cp "$from/report.md" "$dest/report-$(date -u +%Y%m%d-%H%M).md"
    mapfile -t parts < <(ls "$from/$MAIN".train.part* 2>/dev/null | sort -V)
    expected=$(sed -n "s/.*training checkpoint in \([0-9]*\) part(s).*/\1/p" "$from/report.md" | head -1)
    if ((${#parts[@]})); then
        ((${#parts[@]} == ${expected:-0})) || die "$from: ${#parts[@]} part(s) of the training checkpoint, report.md says ${expected:-none}; fetch them all"
        cat "${parts[@]}" > "$RESUME.partial"
        "${PY:-.venv/bin/python}" -c "import sys, torch; torch.load(sys.argv[1], map_location='cpu', weights_only=False)" \
            "$RESUME.partial" || { rm -f "$RESUME.partial"; die "the joined parts of $from do not load; $RESUME is unchanged"; }
        if [[ -f $RESUME ]]; then mv "$RESUME" "$RESUME.prev"; fi
        mv "$RESUME.partial" "$RESUME"
        echo "training checkpoint: $RESUME (${#parts[@]} part(s)); the next pack carries it"
    fi
    ls -l "$dest"
    echo "score the fp16 checkpoints on the test split here, e.g.:"
    echo "    python -m inpaint.evaluate --data ../shared/data/ds002748 --split $SPLIT --methods linear \\"
    echo "        --checkpoint $MAIN=$dest/$MAIN.fp16.ckpt --checkpoint slice_resnet=pretrained --out eval-gpu"
}

bench() {  # bench BUNDLE_DIR: the site bundle unpacked, then the bench on CUDA within 90 s into $OUT/bench.md
    local work
    [[ -n ${OUT:-} ]] || die "OUT is not set: give the folder whose files come back"
    [[ -f $1/site.tar.xz ]] || die "$1/site.tar.xz is missing: run scripts/gpu_campaign.sh pack here first"
    work=$(mktemp -d "${TMPDIR:-/tmp}/gpu_bench.XXXXXX")
    CLEANUP+=("$work")
    mkdir -p "$work/site" "$work/data" "$OUT"
    tar -C "$work/site" -xJf "$1/site.tar.xz"
    tar -C "$work/data" -xJf "$1/data.tar.xz"
    export PYTHONPATH="$work/site:$REPO${PYTHONPATH:+:$PYTHONPATH}" WANDB_MODE=disabled PYTHONUNBUFFERED=1
    timeout -k 5 110 "$PY" -m benchmarks.bench "${BENCH_ARGS[@]}" --queue-root "$work/data" \
        --volume "$(ls "$work"/data/*.nii | head -1)" --out "$OUT/bench.md" 2>&1 | tee "$OUT/bench.log"
}

dry_pack() {  # dry_pack DATA DIR: bundles like bundle.sh's in DIR: omegaconf as the site, 2 training subjects
    local data=$1 dir=$2 site tmp
    tmp=$(mktemp -d)
    CLEANUP+=("$tmp")
    site=$("$PY" -c 'import omegaconf, pathlib; print(pathlib.Path(omegaconf.__file__).parent)')
    tar -C "$(dirname "$site")" -cf - omegaconf | xz -T2 > "$dir/site.tar.xz"
    mkdir -p "$tmp/data"
    for s in $(subjects 2); do
        [[ -f $data/${s}_T1w.nii.gz ]] || die "$data/${s}_T1w.nii.gz: no such file (dry-run --data)"
        gunzip -c "$data/${s}_T1w.nii.gz" > "$tmp/data/${s}_T1w.nii"
    done
    tar -C "$tmp/data" -cf - . | xz -T2 > "$dir/data.tar.xz"
}

run() {  # run BUNDLE_DIR [--dry-run]: unpack into a temporary folder, then the stages
    local bundle=$1 work rc=0
    [[ -n ${OUT:-} ]] || die "OUT is not set: give the folder whose files come back"
    for f in site data; do
        [[ -f $bundle/$f.tar.xz ]] || die "$bundle/$f.tar.xz is missing: run scripts/gpu_campaign.sh pack here first"
    done
    mkdir -p "$OUT"
    work=$(mktemp -d "${TMPDIR:-/tmp}/gpu_campaign.XXXXXX")
    CLEANUP+=("$work")
    mkdir -p "$work/site" "$work/data"
    tar -C "$work/site" -xJf "$bundle/site.tar.xz"
    tar -C "$work/data" -xJf "$bundle/data.tar.xz"
    export PYTHONPATH="$work/site:$REPO${PYTHONPATH:+:$PYTHONPATH}" WANDB_MODE=disabled PYTHONUNBUFFERED=1
    local budget=$((TOTAL_S - (SECONDS - START))) resume=()
    [[ -f $bundle/resume.ckpt ]] && resume=(--resume "$bundle/resume.ckpt")
    [[ -f $bundle/init.ckpt ]] && resume=(--init "$bundle/init.ckpt")
    echo "unpacked in $((SECONDS - START)) s; $budget s left for the stages"
    timeout -k 10 "$budget" "$PY" scripts/gpu_campaign.py --data "$work/data" --work "$work" --out "$OUT" \
        --split "$SPLIT" --budget "$((budget - 20))" "${resume[@]}" "${@:2}" 2>&1 | tee "$OUT/campaign.log" || rc=$?
    return "$rc"
}

[[ ${BASH_SOURCE[0]} == "$0" ]] || return 0  # sourced (tests): the functions only
subjects 0 > /dev/null  # the split file is readable and has its columns
case ${1:-help} in
    pack) pack ;;
    unpack) unpack "${2:?unpack DIR: the folder the files of the call came back to}" ;;
    bench) PY=${PY:-python3} bench .gpu ;;
    run)
        PY=${PY:-python3} TOTAL_S=${TOTAL_S:-540}
        run .gpu ;;
    dry-run)
        shift
        data="" out="" resume=""
        while (($#)); do
            case $1 in
                --data) data=$(cd "$CALLER" && realpath -m -- "$2"); shift 2 ;;
                --out) out=$(cd "$CALLER" && realpath -m -- "$2"); shift 2 ;;
                --resume) resume=$(cd "$CALLER" && realpath -m -- "$2"); shift 2 ;;
                *) die "dry-run: unknown argument $1 (give --data DIR [--out DIR] [--resume CKPT])" ;;
            esac
        done
        [[ -d $data ]] || die "dry-run --data DIR: a folder of sub-XX_T1w.nii.gz named as in $SPLIT"
        PY=${PY:-$([[ -x .venv/bin/python ]] && echo .venv/bin/python || echo python3)} TOTAL_S=${TOTAL_S:-1200}
        bundle=$(mktemp -d)
        CLEANUP+=("$bundle")
        dry_pack "$data" "$bundle"
        if [[ -n $resume ]]; then RESUME=$resume carry_resume "$bundle"; fi  # a dry run's own training checkpoint
        carried "$bundle"
        OUT=${out:-${OUT:-$(mktemp -d)}}
        run "$bundle" --dry-run ;;
    *) sed -n '2,25p' "$0"; exit 2 ;;
esac
