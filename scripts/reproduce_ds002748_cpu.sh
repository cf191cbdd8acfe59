#!/usr/bin/env bash
# The commands behind docs/results.md: CPU-scale training on the committed ds002748 split, then
# evaluation on its 8 test subjects. One stage per call, so that stages can share the cores:
#
#   bash scripts/reproduce_ds002748_cpu.sh STAGE      # STAGE: see the case list at the bottom
#
# Environment: PY (python, default .venv/bin/python), SEGMENT_PY (python with antspyx, default
# .venv-segment/bin/python), DATA (default ../shared/data/ds002748), RUNS (training runs, default runs/ds002748_cpu),
# CAMPAIGN (the slice_resnet campaign's run folder, default runs/slice_resnet/campaign), THICK (the thick-slice model's,
# default runs/slice_resnet/thick), LARGE (the CPU cool-down of the GPU-trained slice_resnet_large, default
# runs/cooldown/slice_resnet_large), GPU_CKPT (the GPU campaign's training checkpoint), SHIFTED (the shifted val set:
# all shifts at once), SHIFTED_ALL (every shift apart too), SITE_INIT (the site A/B's start), SITE (its "on" arm,
# pretrained on 2026-12-05 before slice_resnet_unshuffle), THICK_INIT (the large thick twin's start), LARGE_THICK (that
# twin's run folder), UNSHUFFLE_BEST (the best checkpoint of the capacity A/B winner's campaign), UNSHUFFLE_TIME and
# COOLDOWN_TIME (the ends of that campaign's two phases), UNSHUFFLE_THICK (the winner's thick twin's run folder),
# CAPACITY_TIME (each capacity arm's trainer.max_time), CAMPAIGN_THREADS (torch threads of a campaign stage, default 2),
# EVAL (evaluation folders, default eval-out/ds002748_cpu). Each other training stage uses one torch thread
# (OMP_NUM_THREADS=1) so two stages can run side by side on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
SEGMENT_PY=${SEGMENT_PY:-.venv-segment/bin/python}
DATA=${DATA:-../shared/data/ds002748}
RUNS=${RUNS:-runs/ds002748_cpu}
EVAL=${EVAL:-eval-out/ds002748_cpu}
CAMPAIGN=${CAMPAIGN:-runs/slice_resnet/campaign}
THICK=${THICK:-runs/slice_resnet/thick}
LARGE=${LARGE:-runs/cooldown/slice_resnet_large}
GPU_CKPT=${GPU_CKPT:-runs/gpu_campaign/slice_resnet_large.last.ckpt}  # scripts/gpu_campaign.sh unpack puts it there
SITE_INIT=${SITE_INIT:-$LARGE/checkpoints/best.ckpt}  # the site A/B's start: the shipped model's fp32 checkpoint
[[ -f $SITE_INIT ]] || SITE_INIT=pretrained-slice-resnet-large  # (or its committed fp16 export when the run folder
# is gone: since 2026-12-05 the site-robust version)
SITE=${SITE:-runs/site/slice_resnet_large_on}  # the A/B's arm with site shifts; its last.ckpt (epoch 5, the best
# val_mean/psnr_gain) is pretrained-slice-resnet-large
THICK_INIT=${THICK_INIT:-$SITE/checkpoints/last.ckpt}
[[ -f $THICK_INIT ]] || THICK_INIT=pretrained-slice-resnet-large
LARGE_THICK=${LARGE_THICK:-runs/slice_resnet/large_thick}  # train_slice_resnet_large_thick
UNSHUFFLE_BEST=${UNSHUFFLE_BEST:-runs/capacity/unshuffle/checkpoints/best-v1.ckpt}  # its campaign's best by
# val_mean/psnr_gain (best.ckpt is the capacity A/B's, by val/psnr)
UNSHUFFLE_THICK=${UNSHUFFLE_THICK:-runs/slice_resnet/unshuffle_thick}  # its thick twin (train_unshuffle_thick)
SHIFTED=${SHIFTED:-data-shifted/ds002748_val_site}  # python scripts/make_shifted_val.py ... --shifts site
SHIFTED_ALL=${SHIFTED_ALL:-data-shifted/ds002748_val}  # ... every shift apart and all at once (28 volumes)
SPLIT=experiments/splits/ds002748.tsv
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}

# Data and queue settings shared by every run (the queue is small to fit 24 GiB with 2 runs at once).
DATA_ARGS="data.root=$DATA data.split=$SPLIT data.samples_per_volume=48 data.queue_length=144 data.num_workers=1
           data.val_crop=128 trainer.enable_progress_bar=false"
# The DenseUNet shrunk for the CPU: growth 8, 2 layers per dense block (165 k parameters; the paper: 16, 5).
DENSE_SMALL="generator.features=8 generator.layers_per_block=2"
# Ours: residual output + acquired-slice channel + data consistency, no perceptual term, lr 2e-3; the paper's
# inference (average, overlap 8) stored with it, as when docs/results.md was measured (dense_unet.yaml now says hann / 16).
OURS="model.residual=true model.known_channel=true model.data_consistency=true callbacks.perceptual=null
      optim.lr=2e-3 optim.step_epochs=4 optim.gamma=0.3 inference.overlap=8 inference.aggregation=average"
# The capacity A/B's recipe (issue 25), which its winner's campaign keeps: batch 12 on the CPU, site shifts, validated
# every 2 epochs on the plain and the shifted val set.
CAPACITY_ARGS="data.batch_size=12 data.samples_per_volume=32 augment.p=0.8 trainer.accelerator=cpu
               trainer.check_val_every_n_epoch=2 data.val_shifted=$SHIFTED logger=csv"
# Ablations: ours for one epoch (176 steps), one change each. An epoch is 44 training subjects x 48
# patches / batch 12 = 176 steps, unless trainer.limit_train_batches is smaller.
ABLATE="trainer.max_epochs=1 trainer.limit_train_batches=200"

fit() {  # fit NAME EXPERIMENT OVERRIDES...
    local name=$1 experiment=$2
    shift 2
    # shellcheck disable=SC2068
    $PY -m inpaint.fit experiment="$experiment" $@ run_dir="$RUNS/$name"
}

best() { echo "$RUNS/$1/checkpoints/best.ckpt"; }

evaluate() {  # evaluate OUT PYTHON ARGS...: the test split, paper protocol unless ARGS say otherwise
    local out=$1 python=$2
    shift 2
    $python -m inpaint.evaluate --data "$DATA" --split "$SPLIT" --split-name test --out "$EVAL/$out" --resume "$@"
}

campaign() {  # campaign EXPERIMENT RUN_DIR OVERRIDES...: a long run on CAMPAIGN_THREADS (2), resumed from RUN_DIR's last.ckpt
    local experiment=$1 run_dir=$2 last="$2/checkpoints/last.ckpt"
    shift 2
    # shellcheck disable=SC2046
    OMP_NUM_THREADS=${CAMPAIGN_THREADS:-2} $PY -m inpaint.fit experiment="$experiment" data.root="$DATA" data.split="$SPLIT" \
        trainer.enable_progress_bar=false run_dir="$run_dir" $([[ -f $last ]] && echo "ckpt_path=$last") "$@"
}

intervals() {  # intervals PREFIX NAME=FILE ARGS...: the test split at intervals 2-8 (figures at 5) into EVAL/PREFIX_N
    local prefix=$1 checkpoint=$2 n
    shift 2
    for n in 2 3 4 5 6 7 8; do
        # shellcheck disable=SC2046
        evaluate "${prefix}_$n" "$PY" $([[ $n == 5 ]] || echo --no-figures) --interval "$n" --checkpoint "$checkpoint" "$@"
    done
}

interval_table() {  # interval_table PREFIX METHOD...: one inpaint.compare table of EVAL/PREFIX_2 ... PREFIX_8, a row
    # per interval and METHOD (each scored against its folder's linear)
    local prefix=$1 rows=() n method
    shift
    for n in 2 3 4 5 6 7 8; do
        for method in "$@"; do rows+=("interval $n: $method=$EVAL/${prefix}_$n:$method"); done
    done
    $PY -m inpaint.compare "${rows[@]}"
}

thick_twin() {  # thick_twin RUN_DIR INIT OVERRIDES...: a thin model's thick-slice twin (experiments/slice_resnet_thick.yaml
    # with the thin model's trunk in OVERRIDES), fine-tuned from INIT with site shifts, lr x0.3 after 7 epochs, 12 in
    # all, validated on the plain and the shifted val set, best.ckpt by their mean gain; resumes
    local run_dir=$1 init=$2
    shift 2
    campaign slice_resnet_thick "$run_dir" init_from="$init" augment.p=0.8 optim.step_epochs=7 optim.gamma=0.3 \
        trainer.max_epochs=12 trainer.check_val_every_n_epoch=2 data.val_shifted="$SHIFTED" select=val_mean/psnr_gain \
        logger=csv "$@"
}

morphometry() {  # morphometry OUT SPLIT ARGS...: evaluate --morphometry in the segment venv, ANTs on 2 threads
    local out=$1 split=$2
    shift 2
    ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS=${ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS:-2} OMP_NUM_THREADS=2 \
        $SEGMENT_PY -m inpaint.evaluate --data "$DATA" --split "$SPLIT" --split-name "$split" --out "$EVAL/$out" \
        --resume --morphometry "$@"
}

case ${1:-help} in
    # --- training ---------------------------------------------------------------------------------
    train_ours)  # 880 steps (5 epochs x 176), lr x0.3 after epoch 4; its epoch-1 checkpoint is the ablation base
        fit dense_unet dense_unet $DATA_ARGS $DENSE_SMALL $OURS trainer.max_epochs=5 trainer.limit_train_batches=200 ;;
    train_paper)  # the paper's recipe (L1 + 1e-6 perceptual, Adam 3e-4 x0.1 every third), 300 steps
        fit dense_unet_paper dense_unet_paper $DATA_ARGS $DENSE_SMALL optim.step_epochs=1 trainer.max_epochs=3 \
            trainer.limit_train_batches=100 ;;
    train_unet3d)  # the paper's 3D U-Net at 1/8 of its widths, trained like train_paper
        fit unet3d unet3d $DATA_ARGS "generator.features=[8,16,32,64,128]" optim.step_epochs=1 trainer.max_epochs=3 \
            trainer.limit_train_batches=100 ;;
    train_slice_resnet)  # the acquired-slice generator's campaign (experiments/slice_resnet.yaml, 2 threads), lr 5e-4
        campaign slice_resnet "$CAMPAIGN" trainer.max_epochs=22 ;;  # 2,596 steps; resumes
    cooldown_slice_resnet)  # then the same run at lr 1.5e-4 (resumed from its last.ckpt with this lr); resumes
        campaign slice_resnet "$CAMPAIGN" trainer.max_epochs="${COOLDOWN_EPOCHS:-29}" optim.lr=1.5e-4 ;;
    cooldown_slice_resnet_large)  # the GPU campaign's slice_resnet_large (docs/gpu_campaign_2026-12-04.md) on the CPU:
        # its weights, all 44 training subjects, lr 1.5e-4, batch 12; resumes. 2026-12-04: trainer.max_time=00:01:35:00
        campaign slice_resnet_large "$LARGE" init_from="$GPU_CKPT" optim.lr=1.5e-4 data.batch_size=12 \
            data.samples_per_volume=32 trainer.accelerator=cpu trainer.check_val_every_n_epoch=2 logger=csv "${@:2}" ;;
    site_on | site_off)  # issue 25's site-shift A/B: the shipped model fine-tuned with (on) or without (off) site shifts,
        # the same steps (707 = 6 epochs, 8,448 patches), both arms validated on the plain and the shifted val set
        # (make_shifted_val.py --shifts site, under $SHIFTED); resumes
        arm=${1#site_}
        campaign slice_resnet_large "runs/site/slice_resnet_large_$arm" init_from="$SITE_INIT" optim.lr=1.5e-4 \
            augment.p="$([[ $arm == on ]] && echo 0.8 || echo 0)" data.val_shifted="$SHIFTED" data.batch_size=12 \
            data.samples_per_volume=32 trainer.accelerator=cpu trainer.check_val_every_n_epoch=2 trainer.max_steps=707 \
            logger=csv "${@:2}" ;;
    train_slice_resnet_large_thick)  # issue 25: the thick-slice twin of slice_resnet_large, fine-tuned from it as the small
        # pretrained-thick was from the small model (the large trunk, 2 threads, batch 12; thick_twin above)
        thick_twin "$LARGE_THICK" "$THICK_INIT" generator.features=48 generator.blocks=10 \
            generator.head_features=96 "${@:2}" ;;
    train_unshuffle_thick)  # issue 25: the thick-slice twin of the capacity A/B's winner, fine-tuned from its campaign's
        # best (UNSHUFFLE_BEST) as the large one was (thick_twin above)
        thick_twin "$UNSHUFFLE_THICK" "$UNSHUFFLE_BEST" generator.features=64 generator.blocks=10 \
            generator.head_features=96 generator.unshuffle=2 "${@:2}" ;;
    capacity_large | capacity_unshuffle)  # issue 25's capacity A/B from scratch at equal time (CAPACITY_TIME, default
        # 1 h): slice_resnet_large's trunk at batch 12 against the space-to-depth trunk, both with site shifts as the
        # shipped models are trained, so that the winner's run goes on as the campaign; resumes. 2026-12-05: both arms
        # side by side, CAMPAIGN_THREADS=1 CAPACITY_TIME=00:02:00:00 (equal CPU-hours at every moment)
        arm=${1#capacity_}
        experiment=$([[ $arm == large ]] && echo slice_resnet_large || echo slice_resnet_unshuffle)
        # shellcheck disable=SC2086
        campaign "$experiment" "runs/capacity/$arm" $CAPACITY_ARGS trainer.max_time="${CAPACITY_TIME:-00:01:00:00}" \
            "${@:2}" ;;
    campaign_unshuffle | cooldown_unshuffle)  # issue 25's campaign on the A/B's winner: its run goes on from last.ckpt on
        # 2 threads with the A/B's settings, lr 5e-4 until UNSHUFFLE_TIME (HH:MM of cumulative trainer.max_time, the
        # A/B's 2 h included; default 05:43: 2026-12-05 it was stopped by hand at epoch 90, 8.8 CPU-hours, after its val
        # gain had stayed at +3.25-3.33 dB for 1.2 CPU-hours), then the cool-down at lr 1.5e-4 until COOLDOWN_TIME
        # (default 09:00, ~15 CPU-hours in all at ~1.9 CPU-hours per hour on a machine it has to itself); best.ckpt by
        # the mean of the plain and the shifted val gain; resumes
        lr=$([[ $1 == campaign_unshuffle ]] && echo 5e-4 || echo 1.5e-4)
        until=$([[ $1 == campaign_unshuffle ]] && echo "${UNSHUFFLE_TIME:-05:43}" || echo "${COOLDOWN_TIME:-09:00}")
        # shellcheck disable=SC2086
        campaign slice_resnet_unshuffle runs/capacity/unshuffle $CAPACITY_ARGS select=val_mean/psnr_gain optim.lr="$lr" \
            trainer.max_time="00:$until:00" "${@:2}" ;;
    train_ablation_base)  # = train_ours stopped after its first epoch (same seed, queue and schedule so far)
        fit ablation_base dense_unet $DATA_ARGS $DENSE_SMALL $OURS $ABLATE ;;
    train_ablation_perceptual)  # + the paper's perceptual term (gamma 1e-6)
        fit ablation_perceptual dense_unet $DATA_ARGS $DENSE_SMALL $OURS $ABLATE \
            callbacks.perceptual.weight=1e-6 callbacks.perceptual.layer=block2_conv2 ;;
    train_ablation_plain_io)  # without the acquired-slice channel and the residual output
        fit ablation_plain_io dense_unet $DATA_ARGS $DENSE_SMALL $OURS $ABLATE model.residual=false \
            model.known_channel=false ;;
    train_ablation_intervals)  # random interval 2-6 and offset per subject load
        fit ablation_intervals dense_unet $DATA_ARGS $DENSE_SMALL $OURS $ABLATE "data.intervals=[2,3,4,5,6]" \
            data.random_offset=true ;;
    train_ablation_thick)  # thick slices (slab means), no data consistency (the acquired slices are not the truth)
        fit ablation_thick dense_unet $DATA_ARGS $DENSE_SMALL $OURS $ABLATE data.thick_slices=true \
            model.data_consistency=false ;;
    # --- evaluation on the 8 test subjects -----------------------------------------------------------
    eval_reproduction)  # the paper's protocol (interval 5, offset 0, overlap 8, average) with tissue Dice
        evaluate reproduction "$SEGMENT_PY" --methods linear,cubic --segment \
            --checkpoint unet3d="$(best unet3d)" --checkpoint dense_unet_paper="$(best dense_unet_paper)" \
            --checkpoint dense_unet="$(best dense_unet)" --panel-subject sub-11 ;;
    export_pretrained)  # the committed model: train_ours's best checkpoint, fp16 weights + settings only
        $PY -m inpaint.export "$(best dense_unet)" -o inpaint/assets/pretrained/dense_unet.ckpt --overwrite ;;
    eval_pretrained)  # the committed file itself (fp16) on the test split: the model card's numbers
        evaluate pretrained "$PY" --methods linear --no-figures --checkpoint dense_unet=pretrained-dense-unet ;;
    train_slice_resnet_thick)  # the thick-slice model: fine-tuned from the thin campaign's best (2 threads); resumes.
        # The committed one started from step 1,888 (train_slice_resnet with trainer.max_epochs=16), not the cool-down's best
        campaign slice_resnet_thick "$THICK" init_from="$CAMPAIGN/checkpoints/best.ckpt" ;;
    export_slice_resnet)  # the committed models: the campaigns' best checkpoints, fp16 weights + settings only
        $PY -m inpaint.export "$CAMPAIGN/checkpoints/best.ckpt" -o inpaint/assets/pretrained/slice_resnet.ckpt --overwrite
        if [[ -f $THICK/checkpoints/best.ckpt ]]; then
            $PY -m inpaint.export "$THICK/checkpoints/best.ckpt" -o inpaint/assets/pretrained/slice_resnet_thick.ckpt \
                --overwrite
        fi ;;
    export_slice_resnet_large)  # pretrained-slice-resnet-large, fp16 weights + settings only: the site A/B's "on" arm (until
        # 2026-12-04: "$LARGE/checkpoints/best.ckpt", the cool-down's best, now SITE_INIT)
        $PY -m inpaint.export "$SITE/checkpoints/last.ckpt" -o inpaint/assets/pretrained/slice_resnet_large.ckpt --overwrite ;;
    export_slice_resnet_large_thick)  # the large thick twin: its best checkpoint (by val_mean/psnr_gain), fp16
        $PY -m inpaint.export "$LARGE_THICK/checkpoints/best.ckpt" \
            -o inpaint/assets/pretrained/slice_resnet_large_thick.ckpt --overwrite ;;
    eval_large_intervals)  # pretrained-slice-resnet-large at intervals 2-8, thin, against linear and cubic
        intervals large slice_resnet_large=inpaint/assets/pretrained/slice_resnet_large.ckpt --methods linear,cubic ;;
    export_unshuffle)  # the capacity A/B's winner, fp16 weights + settings only: its campaign's best (UNSHUFFLE_BEST)
        $PY -m inpaint.export "$UNSHUFFLE_BEST" -o inpaint/assets/pretrained/slice_resnet_unshuffle.ckpt --overwrite ;;
    eval_unshuffle_intervals)  # that file at intervals 2-8, thin, against linear, cubic and slice_resnet_large
        intervals unshuffle slice_resnet_unshuffle=inpaint/assets/pretrained/slice_resnet_unshuffle.ckpt \
            --checkpoint slice_resnet_large=pretrained-slice-resnet-large --methods linear,cubic ;;
    export_unshuffle_thick)  # the winner's thick twin (train_unshuffle_thick): its best checkpoint (by val_mean/psnr_gain)
        $PY -m inpaint.export "$UNSHUFFLE_THICK/checkpoints/best.ckpt" \
            -o inpaint/assets/pretrained/slice_resnet_unshuffle_thick.ckpt --overwrite ;;
    eval_unshuffle_thick_intervals)  # that file at intervals 2-8, thick slices, against linear and the large thick twin
        intervals unshuffle_thick slice_resnet_unshuffle_thick=inpaint/assets/pretrained/slice_resnet_unshuffle_thick.ckpt \
            --checkpoint slice_resnet_large_thick=pretrained-slice-resnet-large-thick --methods linear --thick-slices ;;
    eval_shifted)  # pretrained (thin) and pretrained-thick (thick) on the 28-volume shifted val set, each shift apart
        # (python scripts/make_shifted_val.py --data "$DATA" --out "$SHIFTED_ALL"), then the gain per shift
        for model in pretrained pretrained-thick; do
            # shellcheck disable=SC2046
            $PY -m inpaint.evaluate --data "$SHIFTED_ALL" --allow-seen --methods linear --checkpoint "$model=$model" \
                $([[ $model == pretrained-thick ]] && echo --thick-slices) --no-figures --out "$EVAL/shifted_$model" --resume
            $PY scripts/make_shifted_val.py --summarise "$EVAL/shifted_$model/metrics.csv"
        done ;;
    eval_shifted_panel)  # docs/figures/shifted_panel_sub-03.png: a val subject with all site shifts at once, restored
        # by linear, slice_resnet_large before its site shifts (the file of commit 9f2a3cc), after them, and pretrained
        mkdir -p "$EVAL"
        git show 9f2a3cc:inpaint/assets/pretrained/slice_resnet_large.ckpt > "$EVAL/large_one_site.ckpt"
        $PY -m inpaint.evaluate --data "$SHIFTED" --allow-seen --subjects sub-03_acq-site --methods linear \
            --checkpoint one_site="$EVAL/large_one_site.ckpt" --checkpoint large=pretrained-slice-resnet-large \
            --checkpoint pretrained=pretrained --panel-subject sub-03_acq-site --out "$EVAL/shifted_panel" --resume
        cp "$EVAL/shifted_panel/figures/panel_sub-03_acq-site.png" docs/figures/shifted_panel_sub-03.png ;;
    eval_large_thick_intervals)  # pretrained-slice-resnet-large-thick at intervals 2-8, thick slices
        intervals large_thick slice_resnet_large_thick=inpaint/assets/pretrained/slice_resnet_large_thick.ckpt \
            --methods linear --thick-slices ;;
    eval_slice_resnet_intervals)  # the committed any-interval model at intervals 2-8 (figures at 5), thin and thick
        for n in 2 3 4 5 6 7 8; do
            # shellcheck disable=SC2046
            evaluate "slice_resnet_$n" "$PY" --methods linear,cubic $([[ $n == 5 ]] || echo --no-figures) \
                --interval "$n" --checkpoint slice_resnet=inpaint/assets/pretrained/slice_resnet.ckpt
            if [[ -f inpaint/assets/pretrained/slice_resnet_thick.ckpt ]]; then
                evaluate "slice_resnet_thick_$n" "$PY" --methods linear --no-figures --interval "$n" --thick-slices \
                    --checkpoint slice_resnet_thick=inpaint/assets/pretrained/slice_resnet_thick.ckpt --checkpoint slice_resnet=inpaint/assets/pretrained/slice_resnet.ckpt
            fi
        done ;;
    eval_morphometry)  # regional GM volume, thickness, GM maps in MNI (issue 14): linear, cubic, pretrained; resumes
        # (after a new pretrained file: eval_morphometry --redo pretrained)
        morphometry morphometry test --methods linear,cubic --panel-subject sub-11 \
            --checkpoint pretrained=pretrained "${@:2}" ;;
    eval_morphometry_val)  # the same on the 4 validation subjects (held out from training too: the group pattern)
        morphometry morphometry_val val --methods linear,cubic --no-figures \
            --checkpoint pretrained=pretrained ;;
    eval_morphometry_train)  # the 44 training subjects, classical methods only (a network never scores its own training data)
        morphometry morphometry_train train --methods linear,cubic --no-figures ;;
    groups_morphometry)  # the group pattern (depressed - control) over the folders above: Kang et al. Fig. 7
        $SEGMENT_PY -m inpaint.morphometry_groups "$EVAL/morphometry" "$EVAL/morphometry_val" "$EVAL/morphometry_train" \
            --participants "$DATA/participants.tsv" --out "$EVAL/groups" --overwrite ;;
    eval_slice_resnet)  # the campaign's best checkpoint (by val PSNR at interval 5) on the test split, interval 5
        evaluate slice_resnet "$PY" --methods linear --checkpoint slice_resnet="$CAMPAIGN/checkpoints/best.ckpt" ;;
    curve_slice_resnet)  # docs/figures/learning_curve.png: its validation gain against patches and CPU-hours
        $PY scripts/learning_curve.py "slice_resnet (intervals 2-8)=$CAMPAIGN" --mark "lr 5e-4 -> 1.5e-4=30976:4.69" \
            --points "DenseUNet recipe (interval 5 only; docs/results.md)=2112:0.15,4224:0.71,6336:0.95,8448:1.07,10560:1.25" \
            --out docs/figures/learning_curve.png ;;
    curve_capacity)  # docs/figures/capacity_learning_curve.png: the capacity A/B's arms, plain and shifted val gain
        $PY scripts/learning_curve.py "slice_resnet_large (48 wide, 1.34 M)=runs/capacity/large" \
            "slice_resnet_unshuffle (64 wide on 2x2 cells, 2.39 M)=runs/capacity/unshuffle" \
            --at 0.5,1,1.5,1.9 --until-hours 2.1 --out docs/figures/capacity_learning_curve.png ;;
    curve_unshuffle)  # docs/figures/unshuffle_campaign_curve.png: the capacity A/B winner's whole run (the A/B, its
        # campaign, the cool-down), plain and shifted val gain, beside where slice_resnet_large's H200 lease ended
        $PY scripts/learning_curve.py "slice_resnet_unshuffle (A/B, then campaign)=runs/capacity/unshuffle" \
            --points "slice_resnet_large after its H200 lease (plain val)=232848:3.18" \
            --mark "lr 5e-4 -> 1.5e-4=128124:8.80" --out docs/figures/unshuffle_campaign_curve.png ;;
    curve_unshuffle_thick)  # docs/figures/unshuffle_thick_learning_curve.png: the winner's thick twin, plain and
        # shifted val gain, beside the large thick twin's plain val gain (its model card's table)
        large_plain=2816:3.53,5632:3.49,8448:2.97,11264:3.52,14080:3.67,16896:4.06
        $PY scripts/learning_curve.py "unshuffle thick twin (site shifts, thick slices)=$UNSHUFFLE_THICK" \
            --points "large thick twin (plain val)=$large_plain" --mark "lr 5e-4 -> 1.5e-4=9856:0.77" \
            --out docs/figures/unshuffle_thick_learning_curve.png ;;
    curve_site)  # docs/figures/site_ab_learning_curve.png and large_thick_learning_curve.png: plain and shifted val gain
        $PY scripts/learning_curve.py "site shifts on (augment.p 0.8)=$SITE" \
            "site shifts off=runs/site/slice_resnet_large_off" --out docs/figures/site_ab_learning_curve.png
        $PY scripts/learning_curve.py "large thick twin (site shifts, thick slices)=$LARGE_THICK" \
            --mark "lr 5e-4 -> 1.5e-4=9856:1.46" --out docs/figures/large_thick_learning_curve.png ;;
    eval_ablation)  # the ablation checkpoints at interval 5 (each copies acquired slices back as trained)
        evaluate ablation "$PY" --methods linear --no-figures --checkpoint base="$(best ablation_base)" \
            --checkpoint plain_io="$(best ablation_plain_io)" --checkpoint intervals="$(best ablation_intervals)" ;;
    eval_ablation_perceptual)  # the slowest ablation to train, in its own folder
        evaluate ablation_perceptual "$PY" --methods linear --no-figures \
            --checkpoint perceptual="$(best ablation_perceptual)" ;;
    eval_ablation_dc_off)
        evaluate ablation_dc_off "$PY" --methods linear --no-figures --data-consistency off \
            --checkpoint base="$(best ablation_base)" ;;
    eval_ablation_hann)  # hann weighting and overlap 16 instead of averaging with overlap 8
        evaluate ablation_hann "$PY" --methods linear --no-figures --aggregation hann --overlap 16 \
            --checkpoint base="$(best ablation_base)" ;;
    eval_ours_hann)  # ours (the pretrained model's checkpoint) with hann weighting and overlap 16
        evaluate ours_hann "$PY" --methods linear --no-figures --aggregation hann --overlap 16 \
            --checkpoint dense_unet="$(best dense_unet)" ;;
    eval_intervals)  # the random-interval network at intervals 2, 3, 4, 6 (interval 5: eval_ablation)
        for n in 2 3 4 6; do
            evaluate "intervals_$n" "$PY" --methods linear --no-figures --interval "$n" \
                --checkpoint intervals="$(best ablation_intervals)"
        done ;;
    eval_thick)  # thick-slice input: the thick-trained network and the thin-trained base
        evaluate thick "$PY" --methods linear --no-figures --thick-slices \
            --checkpoint thick="$(best ablation_thick)" --checkpoint base="$(best ablation_base)" ;;
    # --- the tables of docs/results.md ----------------------------------------------------------------
    table_ablation)
        $PY -m inpaint.compare "linear=$EVAL/ablation:linear" "base: ours, 176 steps=$EVAL/ablation:base" \
            "1. + perceptual (gamma 1e-6)=$EVAL/ablation_perceptual:perceptual" \
            "2. base, data consistency off=$EVAL/ablation_dc_off:base" \
            "3. base, hann + overlap 16=$EVAL/ablation_hann:base" \
            "4. base without known channel and residual=$EVAL/ablation:plain_io" \
            "5. random intervals 2-6, at interval 5=$EVAL/ablation:intervals" \
            "ours, 880 steps=$EVAL/reproduction:dense_unet" "ours, 880 steps, hann + overlap 16=$EVAL/ours_hann:dense_unet" ;;
    table_intervals)
        rows=()
        for n in 2 3 4 6; do rows+=("interval $n: linear=$EVAL/intervals_$n:linear" "interval $n: random-interval net=$EVAL/intervals_$n:intervals"); done
        $PY -m inpaint.compare "${rows[@]}" "interval 5: linear=$EVAL/ablation:linear" \
            "interval 5: random-interval net=$EVAL/ablation:intervals" "interval 5: base (trained at 5)=$EVAL/ablation:base" ;;
    table_large)  # pretrained-slice-resnet-large at intervals 2-8 against linear and cubic
        interval_table large linear cubic slice_resnet_large ;;
    table_unshuffle)  # the capacity A/B's winner at intervals 2-8 against linear, cubic and slice_resnet_large
        interval_table unshuffle linear cubic slice_resnet_large slice_resnet_unshuffle ;;
    table_unshuffle_thick)  # the winner's thick twin at intervals 2-8 against linear and the large thick twin
        interval_table unshuffle_thick linear slice_resnet_large_thick slice_resnet_unshuffle_thick ;;
    table_large_thick)  # pretrained-slice-resnet-large-thick at intervals 2-8 against linear
        interval_table large_thick linear slice_resnet_large_thick ;;
    table_slice_resnet)  # the committed any-interval models at intervals 2-8 against linear and cubic (thin; thick)
        rows=()
        for n in 2 3 4 5 6 7 8; do
            rows+=("interval $n: linear=$EVAL/slice_resnet_$n:linear" "interval $n: cubic=$EVAL/slice_resnet_$n:cubic"
                   "interval $n: slice_resnet=$EVAL/slice_resnet_$n:slice_resnet")
            if [[ -d $EVAL/slice_resnet_thick_$n ]]; then
                rows+=("interval $n thick: linear=$EVAL/slice_resnet_thick_$n:linear"
                       "interval $n thick: slice_resnet (thin model)=$EVAL/slice_resnet_thick_$n:slice_resnet"
                       "interval $n thick: slice_resnet_thick=$EVAL/slice_resnet_thick_$n:slice_resnet_thick")
            fi
        done
        $PY -m inpaint.compare "${rows[@]}" ;;
    table_thick)
        $PY -m inpaint.compare "thick: linear=$EVAL/thick:linear" "thick: trained on thick slices=$EVAL/thick:thick" \
            "thick: base (trained on thin slices)=$EVAL/thick:base" ;;
    *)
        sed -n '2,9p' "$0"
        echo "stages:"
        grep -E '^    [a-z0-9_ |]+\)' "$0" | sed -E 's/^ +([a-z0-9_ |]+)\) *(# *)?/  \1  /' ;;
esac
