"""Concept tests (TCAV) and feature visualization: their charts, galleries and document blocks."""

from __future__ import annotations

import numpy as np

from audits.render.blocks import Paragraph, RenderContext, Table, figure, num
from audits.render.charts import HeatmapChart, ImageCell, ImageGrid, grey_or_rgb
from audits.render.registry import view
from audits.results.concepts import FeatureVisualizationResult, TCAVResult

TCAV_MEANING = (
    "What this means: a concept (a value of an attribute of the evaluation data, or a set of example inputs) is represented at the layer "
    "by the direction that separates its examples from random rows (its concept activation vector). A class's TCAV score is the share of "
    "that class's evaluation rows whose class score rises when the layer's activation moves along that direction; a score far from what "
    "random directions give, consistently over repeated random splits (two-sided t-test, Bonferroni-corrected), says the model uses the "
    "concept for that class. What it does not mean: it measures sensitivity to a direction at one layer, not that the concept causes the "
    "decisions, and not how large the effect is on the output; a concept the layer does not separate from random rows (low CAV accuracy) "
    "is never significant, and a concept correlated with another one (an acquisition site with image quality; a text identity group with "
    "the words and topics its texts share) stands for both. For text models each text's token states are averaged at the layer."
)
FV_MEANING = (
    "What this means: each optimised image is an input the model was driven to answer with maximum confidence for a class (or to excite one "
    "channel of the layer), under jitter, blur and a decorrelated parameterisation that favour patterns the model reacts to robustly; the "
    "evaluation images beside it are the real ones that excite the same output most. Together they show what the model looks for. What it "
    "does not mean: an optimised image is one of many inputs that excite the output, shaped by the regularisation; it is not what a typical "
    "example of the class looks like, and a clean-looking image is no proof that the model has no shortcut (compare with the top evaluation images)."
)


def _unit(image: np.ndarray, value_range: list[float]) -> np.ndarray:
    lo, hi = float(value_range[0]), float(value_range[1])
    return grey_or_rgb(np.clip((np.asarray(image, dtype=np.float64) - lo) / ((hi - lo) or 1.0), 0.0, 1.0))


def tcav_chart(r: TCAVResult) -> HeatmapChart:
    """Mean TCAV score per concept and class; '*' marks the significant pairs."""
    means = r.mean_scores()
    sig = np.asarray(r.significant, dtype=bool)
    notes = np.array([[f"{means[c, k]:.2f}" + ("*" if sig[c, k] else "") for k in range(means.shape[1])] for c in range(means.shape[0])], dtype=object)
    return HeatmapChart(
        title=f"TCAV score at {r.layer}",  # short: a two-class heatmap is narrow; the caption explains the '*'
        x_label="class",
        y_label="concept",
        x_labels=list(r.class_names),
        y_labels=list(r.concepts),
        values=means,
        colorbar="TCAV score",
        zmin=0.0,
        zmax=1.0,
        colorscale="diverging",
        annotations=notes,
        height=max(2.4, 0.45 * len(r.concepts) + 1.6),
    )


@view(TCAVResult)
def tcav_view(r: TCAVResult, ctx: RenderContext) -> list:
    """The score heatmap, then the significant concept-class pairs with their scores against random, and the meaning."""
    blocks: list = [Paragraph(TCAV_MEANING)]
    blocks += figure(
        tcav_chart(r),
        f"{len(r.concepts)} concepts, {r.scores.shape[2]} CAVs each against fresh random rows; 0.5 is no preference; * significant against random concepts.",
    )
    means, rand, p = r.mean_scores(), r.random_mean(), np.asarray(r.p_values)
    sig = np.asarray(r.significant, dtype=bool)
    rows = [
        [
            r.concepts[c],
            r.class_names[k],
            num(means[c, k], 2),
            num(rand[k], 2),
            f"{p[c, k]:.2g}",
            "raises" if r.raises()[c, k] else "lowers",
            "yes" if r.sensitive[c] else "no",
        ]
        for c, k in zip(*np.nonzero(sig), strict=True)
    ]
    if rows:
        blocks.append(
            Table(["Concept", "Class", "TCAV score", "Random", "p", "Effect", "Sensitive"], rows, caption="Significant concept-class pairs", numeric=[2, 3, 4])
        )
    else:
        blocks.append(Paragraph("No concept moves any class significantly differently from random concepts.", "note"))
    acc = np.asarray(r.cav_accuracy, dtype=np.float64).mean(axis=1)
    blocks.append(
        Table(
            ["Concept", "Source", "Examples", "CAV accuracy"],
            [[c, s, num(n), num(a, 2)] for c, s, n, a in zip(r.concepts, r.concept_sources, r.n_examples, acc, strict=True)],
            caption="Concepts: where their examples come from and how well the layer separates them from random rows (held-out accuracy; 0.5 = not at all)",
            numeric=[2, 3],
        )
    )
    return blocks


def class_gallery(r: FeatureVisualizationResult) -> ImageGrid:
    """One row per class: its optimised image, then the evaluation images with the highest class logit."""
    cells = []
    for k in range(len(r.class_names)):
        row = [ImageCell(_unit(r.class_images[k], r.value_range), caption=f"class {r.class_names[k]}, p={r.class_probability[k]:.2f}")]
        row += [ImageCell(_unit(im, r.value_range), caption=f"logit {v:.1f}") for im, v in zip(r.top_class_images[k], r.top_class_logits[k], strict=True)]
        cells.append(row)
    top = r.top_class_images.shape[1] if r.top_class_images.ndim > 1 else 0
    return ImageGrid(
        title="Class images: optimised, then the top evaluation images",
        col_labels=["optimised"] + [f"top {i + 1}" for i in range(top)],
        row_labels=[f"class {c}" for c in r.class_names],
        cells=cells,
    )


def channel_gallery(r: FeatureVisualizationResult) -> ImageGrid:
    """One row per channel of the layer: its optimised image, then the evaluation images that excite it most."""
    cells = []
    for j in range(len(r.channels)):
        row = [ImageCell(_unit(r.channel_images[j], r.value_range), caption=f"channel {int(r.channels[j])}, act {r.channel_activation[j]:.1f}")]
        row += [ImageCell(_unit(im, r.value_range), caption=f"act {v:.1f}") for im, v in zip(r.top_channel_images[j], r.top_channel_values[j], strict=True)]
        cells.append(row)
    top = r.top_channel_images.shape[1] if r.top_channel_images.ndim > 1 else 0
    return ImageGrid(
        title=f"Channels of {r.layer}: optimised, then the top evaluation images",
        col_labels=["optimised"] + [f"top {i + 1}" for i in range(top)],
        row_labels=[f"channel {int(c)}" for c in r.channels],
        cells=cells,
    )


@view(FeatureVisualizationResult)
def feature_visualization_view(r: FeatureVisualizationResult, ctx: RenderContext) -> list:
    """The meaning, the class gallery, the channel gallery and how far the optimisation got."""
    blocks: list = [Paragraph(FV_MEANING)]
    blocks += figure(class_gallery(r), f"{r.steps} optimisation steps per image; p is the class probability the optimised image reaches.")
    if len(r.channels):
        blocks += figure(channel_gallery(r), "Channels with the highest mean activation on the evaluation images; act is the channel's mean activation.")
    rows = [[c, num(r.class_logits[k], 2), num(r.eval_max_logits[k], 2), num(r.class_probability[k], 3)] for k, c in enumerate(r.class_names)]
    blocks.append(
        Table(
            ["Class", "Optimised logit", "Best evaluation logit", "Optimised probability"],
            rows,
            caption="How strongly each optimised image excites its class",
            numeric=[1, 2, 3],
        )
    )
    return blocks
