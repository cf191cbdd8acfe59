"""inpaint.figures: the slice panel's planes and the box plots."""

from __future__ import annotations

import numpy as np

from inpaint.figures import _pyplot, box_plots, method_labels, missing_slice


def test_the_axial_plane_is_a_mid_gap_missing_slice_inside_the_acquired_range():
    line = np.zeros(40, dtype=bool)
    line[3:34:5] = True  # acquired 3, 8, ..., 33: slices 34-39 lie beyond the last one
    assert missing_slice(line, centre=30) in (30, 31) and missing_slice(line, centre=5) in (5, 6)


def test_box_plots_write_the_metrics_and_the_paired_gain(tmp_path):
    rows = [{"subject": s, "method": m, "psnr": 30.0 + d, "psnr_missing": 29.0 + d, "ssim": 0.8, "hfen": 0.5}
            for s in ("a", "b", "c") for m, d in (("linear", 0.0), ("net", 1.0))]
    paths = box_plots(rows, ["linear", "net"], tmp_path, "; interval 5")
    assert [p.name for p in paths] == ["boxplots.png", "psnr_gain.png"] and all(p.stat().st_size > 1000 for p in paths)
    assert [p.name for p in box_plots([r for r in rows if r["method"] == "linear"], ["linear"], tmp_path / "l")] == \
        ["boxplots.png"]


def test_long_method_names_do_not_overlap_under_their_boxes():
    plt = _pyplot()
    methods = ["linear", "cubic", "soup_gan", "eclare", "slice_resnet_large", "dense_unet_paper", "pretrained-thick"]
    fig, ax = plt.subplots(figsize=(0.75 + 0.55 * len(methods), 4.2), layout="constrained")
    ax.boxplot([[1.0, 2.0]] * len(methods), tick_labels=methods)
    method_labels(ax, methods)
    fig.canvas.draw()
    labels = ax.get_xticklabels()
    # each slanted label ends at its own tick, so the labels lie on parallel lines through the ticks: they cannot
    # overlap when those lines are more than a line of text apart
    assert all(label.get_ha() == "right" and label.get_rotation_mode() == "anchor" for label in labels)
    step = ax.transData.transform((2, 0))[0] - ax.transData.transform((1, 0))[0]
    apart = step * np.sin(np.radians(labels[0].get_rotation()))
    assert apart > 1.2 * labels[0].get_fontsize() * fig.dpi / 72
    plt.close(fig)
