"""Discovery results (slice discovery, trigger scan, trigger words, attribution regions): their charts and document blocks."""

from __future__ import annotations

import numpy as np

from audits.render.blocks import Paragraph, RenderContext, figure, frame_table
from audits.render.charts import BarChart, HeatmapChart, ImageCell, ImageGrid, RefLine, Series, grey_or_rgb
from audits.render.registry import view
from audits.results.discovery import AttributionRegionsResult, SliceDiscoveryResult, TriggerScanResult, TriggerValuesResult, TriggerWordsResult


def slice_chart(result: SliceDiscoveryResult) -> BarChart:
    """The significant slices' error rates with their Wilson intervals, against the overall error rate."""
    t = result.flagged
    labels = [f"{s} (n={int(n)})" for s, n in zip(t["slice"], t["size"], strict=True)]
    return BarChart(
        title="Slices that err significantly more than overall (95% Wilson intervals)",
        categories=labels,
        series=[Series("error rate", labels, list(t["error_rate"]), list(t["lo"]), list(t["hi"]))] if len(t) else [],
        value_label="error rate",
        ref_lines=[RefLine(result.overall_error, f"overall {result.overall_error:.1%}", axis="x")],
        value_range=(0.0, 1.0),
    )


def trigger_chart(result: TriggerScanResult, k: int = 10) -> BarChart:
    """The strongest (patch, position, class) cells: the median source class's flip rate and the typical one."""
    t = result.strongest(k)
    labels = [f"{p} {int(s)}px at ({int(r)},{int(c)}) -> {g}" for p, s, r, c, g in zip(t["patch"], t["size"], t["row"], t["col"], t["target"], strict=True)]
    series = [
        Series("median source class", labels, list(t["source_median"]), list(t["lo"]), list(t["hi"])),
        Series("typical patch", labels, list(t["typical"])),
    ]
    return BarChart(
        title="Strongest patches: flip rate into a class", categories=labels, series=series if len(t) else [], value_label="flip rate", value_range=(0.0, 1.05)
    )


def trigger_examples(result: TriggerScanResult) -> ImageGrid:
    """Patched images of other classes that the strongest patch turned into its class."""
    images = np.asarray(result.examples, dtype=np.float64)
    cells = [[ImageCell(grey_or_rgb(np.clip(im, 0.0, 1.0) if im.max() <= 1.0 else im / 255.0)) for im in images]] if len(images) else []
    return ImageGrid(
        title=f"Examples: {result.example_cell}",
        col_labels=[f"predicted {p}" for p in result.example_predictions],
        row_labels=["patched"] if cells else [],
        cells=cells,
    )


@view(SliceDiscoveryResult)
def slice_discovery_view(r: SliceDiscoveryResult, ctx: RenderContext) -> list:
    """The significant slices (worst first) with sizes, intervals, q-values and example rows."""
    blocks: list = [
        Paragraph(
            f"{r.n_tested:,} slices of at least {r.min_size:,} rows tested (every column of the evaluation data, numeric ones in quantile bins, "
            f"and pairs); overall error rate {r.overall_error:.1%} on {r.n_rows:,} rows. {len(r.flagged)} slice(s) err significantly more "
            f"(Benjamini-Hochberg, false discovery rate {r.fdr:g})."
        )
    ]
    blocks += figure(slice_chart(r), empty="No slice errs significantly more than overall.")
    blocks += frame_table(
        r.flagged,
        columns=["slice", "size", "errors", "error_rate", "lo", "hi", "q_value", "examples"],
        caption="Significant slices (examples: misclassified row indices)",
    )
    return blocks


@view(TriggerScanResult)
def trigger_scan_view(r: TriggerScanResult, ctx: RenderContext) -> list:
    """The strongest patches per class and the images they turned."""
    blocks: list = [
        Paragraph(
            f"Patches pasted onto {r.n_images:,} images at every position of a coarse grid. A trigger pulls images of every other class into "
            "one class, so the statistic is the median over source classes of their flip rate into the class, against the typical patch's."
        )
    ]
    blocks += figure(trigger_chart(r))
    blocks += frame_table(
        r.strongest(10), columns=["patch", "size", "row", "col", "target", "n", "flip_rate", "source_median", "typical", "excess"], caption="Strongest cells"
    )
    blocks += figure(trigger_examples(r))
    return blocks


@view(TriggerWordsResult)
def trigger_words_view(r: TriggerWordsResult, ctx: RenderContext) -> list:
    """The words that flip the most decisions into a class, and rewritten texts that flipped."""
    blocks: list = [Paragraph(f"Single words inserted at the start of {r.n_texts:,} texts; candidates ranked by {r.ranked_by}.")]
    blocks += frame_table(
        r.strongest(10), columns=["word", "target", "n", "flip_rate", "lo", "hi", "typical", "excess"], caption="Words that flip the most decisions"
    )
    if r.examples:
        blocks.append(Paragraph("Flipped by the strongest word: " + " | ".join(r.examples)))
    return blocks


def region_share_chart(result: AttributionRegionsResult) -> HeatmapChart:
    """Per class (rows) and region (columns: grid cells, then the border): the mean share of attribution mass over methods."""
    t = result.regions
    table = t.groupby(["target", "region"], sort=False)["share"].mean().unstack("region")
    regions = [c for c in t["region"].drop_duplicates()]
    table = table[regions]
    uniform = t.drop_duplicates("region").set_index("region")["uniform"]
    return HeatmapChart(
        title="Share of attribution mass per region and predicted class (mean over methods)",
        x_label="region (r<row>c<col> of the grid; border ring)",
        y_label="predicted class",
        x_labels=[f"{r} (uniform {uniform[r]:.0%})" for r in regions],
        y_labels=[str(c) for c in table.index],
        values=table.to_numpy(dtype=float),
        colorbar="share of |attribution|",
        zmin=0.0,
        annotations=np.vectorize(lambda v: f"{v:.0%}")(table.to_numpy(dtype=float)),
    )


def class_grid_chart(result: AttributionRegionsResult, target: str) -> HeatmapChart:
    """One class's mean share per grid cell (mean over methods), laid out as the grid lies on the image."""
    t = result.regions[(result.regions["target"] == target) & (result.regions["region"] != "border")]
    cells = t.groupby("region", sort=False)["share"].mean()
    g = result.grid
    values = np.full((g, g), np.nan)
    for region, v in cells.items():
        i, j = (int(x) for x in region[1:].split("c"))
        values[i, j] = v
    border = result.regions[(result.regions["target"] == target) & (result.regions["region"] == "border")]["share"].mean()
    return HeatmapChart(
        title=f"Class {target}: share of attribution mass per grid cell (uniform {1 / g**2:.0%}; border ring {border:.0%})",
        x_label="grid column", y_label="grid row", x_labels=[str(j) for j in range(g)], y_labels=[str(i) for i in range(g)],
        values=values, colorbar="share of |attribution|", zmin=0.0, annotations=np.vectorize(lambda v: f"{v:.0%}")(values),
    )  # fmt: skip


@view(AttributionRegionsResult)
def attribution_regions_view(r: AttributionRegionsResult, ctx: RenderContext) -> list:
    """Per class, how far its attribution mass leans on one region, and where the mass sits."""
    blocks: list = [
        Paragraph(
            f"Each explained image's |attribution| map cut into a {r.grid}x{r.grid} grid and a {r.border_px}-pixel border ring, per method "
            f"({', '.join(r.methods) or 'none'}) and predicted class. The excess is the median sample's share of a region minus the larger of "
            "the region's share of the pixels and the largest share any other class gives it; per class, the median over methods."
        )
    ]
    blocks += [Paragraph(n) for n in r.notes]
    if not len(r.regions):
        return blocks
    blocks += frame_table(
        r.per_class().sort_values("excess", ascending=False), columns=["target", "n", "excess", "lo", "hi", "region", "methods"],
        caption="Per class: largest excess of attribution share in one region (median over methods, bootstrap bounds)",
    )  # fmt: skip
    blocks += figure(region_share_chart(r))
    c = r.per_class()
    if len(c):
        blocks += figure(class_grid_chart(r, str(c.loc[c["excess"].idxmax(), "target"])))
    blocks += frame_table(
        r.strongest(10), columns=["method", "target", "region", "n", "share", "uniform", "others", "excess", "lo", "hi", "consistency"],
        caption="Strongest (method, class, region) rows",
    )  # fmt: skip
    return blocks


@view(TriggerValuesResult)
def trigger_values_view(r: TriggerValuesResult, ctx: RenderContext) -> list:
    """The feature values that force the most rows into a class, against the feature's other values."""
    t = r.strongest(10)
    labels = [f"{f}={v} -> {g}" for f, v, g in zip(t["feature"], t["value"], t["target"], strict=True)]
    chart = BarChart(
        title="Strongest feature values: flip rate into a class (95% Wilson intervals)",
        categories=labels,
        series=[Series("flip rate", labels, list(t["flip_rate"]), list(t["lo"]), list(t["hi"])), Series("reference", labels, list(t["reference"]))]
        if len(t)
        else [],
        value_label="flip rate",
        value_range=(0.0, 1.05),
    )
    blocks: list = [
        Paragraph(
            f"Each feature set, one at a time, to each of its levels or quantiles on {r.n_rows:,} rows. The reference is the larger of the "
            "typical value's flip rate and that of the feature's other levels (numerics: its neighbouring quantiles), so a feature that "
            "drives the model step by step does not stand out; a value that forces the outcome alone does."
        )
    ]
    blocks += figure(chart)
    blocks += frame_table(t, columns=["feature", "value", "target", "n", "flip_rate", "lo", "hi", "reference", "excess"], caption="Strongest values")
    if r.examples:
        blocks.append(Paragraph(f"Rows the strongest value flipped: {', '.join(str(i) for i in r.examples)}."))
    return blocks
