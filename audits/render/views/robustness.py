"""Robustness results (attacks, corruptions, calibration under shift, tabular and text perturbations): their charts and document blocks."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from audits.render.blocks import KeyValues, RenderContext, figure, frame_table, num, pct
from audits.render.charts import REFERENCE, BarChart, ImageCell, ImageGrid, LineChart, RefLine, Series, class_name, grey_or_rgb, pretty, scaled
from audits.render.registry import view
from audits.results.robustness import (
    AttackResult,
    AutoAttackResult,
    CalibrationResult,
    CorruptionResult,
    MinimalPerturbationResult,
    SmoothingResult,
    TabularAdversarialResult,
    TabularPerturbationResult,
    TextRobustnessResult,
    WordSubstitutionResult,
)

# ---------------------------------------------------------------------------- charts


def attack_curve_chart(results: list) -> LineChart:
    """Robust accuracy against the perturbation budget, one line per attack."""
    series = []
    clean = None
    for r in results:
        c = r.curve
        series.append(Series(f"{r.method.upper()} ({pretty(r.norm)}{', targeted' if r.targeted else ''})", list(c["epsilon"]), list(c["robust_accuracy"])))
        clean = r.clean_accuracy
    refs = [RefLine(clean, f"clean accuracy {clean:.3f}")] if clean is not None else []
    norm = pretty(results[0].norm) if results else ""
    return LineChart(
        title="Accuracy under adversarial attack",
        x_label=f"epsilon ({norm} budget, pixel units)",
        y_label="robust accuracy",
        series=series,
        ref_lines=refs,
        y_range=(0.0, 1.02),
    )


def attack_group_chart(result) -> LineChart:
    """Robust accuracy per sensitive group against epsilon (one attack)."""
    t = result.by_group
    series = [
        Series(f"{a}: {g} (n={int(rows['count'].iloc[0])})", list(rows["epsilon"]), list(rows["robust_accuracy"]))
        for (a, g), rows in t.groupby(["attribute", "group"], sort=False)
    ]
    return LineChart(
        title=f"{result.method.upper()}: robust accuracy per group",
        x_label=f"epsilon ({pretty(result.norm)} budget, pixel units)",
        y_label="robust accuracy",
        series=series,
        y_range=(0.0, 1.02),
    )


def adversarial_examples_chart(result, class_names: list[str], value_range: Sequence[float] = (0.0, 1.0)) -> ImageGrid:
    """Clean image, perturbation and adversarial image, with predictions and confidences."""
    ex = result.examples
    lo, hi = float(value_range[0]), float(value_range[1])
    cells = []
    for k in range(len(ex.rows)):
        clean = grey_or_rgb((np.asarray(ex.clean[k], dtype=np.float64) - lo) / (hi - lo))
        adv = grey_or_rgb((np.asarray(ex.adversarial[k], dtype=np.float64) - lo) / (hi - lo))
        pert = np.asarray(ex.perturbation[k], dtype=np.float64).sum(axis=0)
        cells.append(
            [
                ImageCell(
                    clean,
                    caption=f"label {class_name(class_names, ex.labels[k])}; predicted {class_name(class_names, ex.clean_predictions[k])} ({ex.clean_confidence[k]:.2f})",
                ),
                ImageCell(None, scaled(pert, "signed"), "signed", caption=f"max |change| {np.abs(ex.perturbation[k]).max():.3f}"),
                ImageCell(adv, caption=f"predicted {class_name(class_names, ex.adversarial_predictions[k])} ({ex.adversarial_confidence[k]:.2f})"),
            ]
        )
    return ImageGrid(
        title=f"{result.method.upper()} adversarial examples at epsilon {ex.epsilon:.3g}",
        col_labels=["clean", "perturbation", "adversarial"],
        row_labels=[f"#{int(r)}" for r in ex.rows],
        cells=cells,
        legend="Perturbation: red adds brightness, blue removes it (scaled to its largest change). Confidence in brackets.",
        colorbar="signed",
        colorbar_label="perturbation / max |perturbation|",
    )


def corruption_chart(result) -> LineChart:
    """Accuracy against corruption severity, one line per corruption (severity 0 = clean)."""
    t = result.table
    series = []
    for name, rows in t.groupby("corruption", sort=False):
        series.append(Series(pretty(name), [0, *rows["severity"].tolist()], [result.clean_accuracy, *rows["accuracy"].tolist()]))
    return LineChart(
        title=f"Accuracy under natural corruptions (mean over severities 1-5: {result.mean_corruption_accuracy:.3f})",
        x_label="severity (0 = clean)",
        y_label="accuracy",
        series=series,
        ref_lines=[RefLine(result.clean_accuracy, f"clean accuracy {result.clean_accuracy:.3f}")],
        y_range=(0.0, 1.02),
        height=3.3,
    )


def corruption_group_chart(result) -> LineChart:
    """Accuracy per sensitive group against severity, averaged over corruptions."""
    t = result.by_group
    series = []
    for (a, g), rows in t.groupby(["attribute", "group"], sort=False):
        mean = rows.groupby("severity")["accuracy"].mean()
        clean = float(rows["clean_accuracy"].iloc[0])
        series.append(Series(f"{a}: {g} (n={int(rows['count'].iloc[0])})", [0, *mean.index.tolist()], [clean, *mean.tolist()]))
    return LineChart(
        title="Corruption accuracy per group (mean over corruptions)",
        x_label="severity (0 = clean)",
        y_label="accuracy",
        series=series,
        y_range=(0.0, 1.02),
    )


def corruption_examples_chart(result, example: int = 0) -> ImageGrid:
    """One image under every corruption (rows) at severities 0-5 (columns)."""
    ex = result.examples
    images = np.asarray(ex.images[example], dtype=np.float64) / 255.0  # (n_corr, n_sev, C, H, W)
    cells = [[ImageCell(grey_or_rgb(images[c, s])) for s in range(images.shape[1])] for c in range(images.shape[0])]
    return ImageGrid(
        title=f"Corruption examples (row #{int(ex.rows[example])})",
        col_labels=[("clean" if s == 0 else f"severity {s}") for s in ex.severities],
        row_labels=[pretty(c) for c in ex.corruptions],
        cells=cells,
    )


def calibration_reliability_chart(result) -> LineChart:
    """Reliability curves on clean data and under each shift strength."""
    t = result.reliability
    series = [Series(REFERENCE, [0.0, 1.0], [0.0, 1.0], mode="lines", dash=True)]
    for (cond, strength), rows in t.groupby(["condition", "strength"], sort=False):
        rows = rows[rows["count"] > 0]
        name = cond if cond.startswith("clean") else f"{pretty(cond)} {strength:g}"
        series.append(Series(name, list(rows["confidence"]), list(rows["accuracy"]), text=[f"{int(c)} rows" for c in rows["count"]]))
    return LineChart(
        title=f"Reliability under {pretty(result.shift)}",
        x_label="mean confidence in bin",
        y_label="accuracy in bin",
        series=series,
        x_range=(0.0, 1.0),
        y_range=(0.0, 1.02),
    )


def calibration_shift_chart(result) -> LineChart:
    """Accuracy, mean confidence and ECE against the shift strength."""
    c = result.conditions
    x = list(c["strength"])
    return LineChart(
        title=f"Calibration under {pretty(result.shift)}",
        x_label=f"{pretty(result.shift)} strength (0 = clean)",
        y_label="value (0-1)",
        series=[Series("accuracy", x, list(c["accuracy"])), Series("mean confidence", x, list(c["mean_confidence"])), Series("ECE", x, list(c["ece"]))],
        y_range=(0.0, 1.02),
    )


def tabular_perturbation_chart(result) -> LineChart:
    """Decision flip rate against perturbation strength (all features at once)."""
    t = result.table
    t = t[(t["feature"] == "*") & t["flip_rate"].notna()]
    series = [Series(pretty(p), list(rows["strength"]), list(rows["flip_rate"])) for p, rows in t.groupby("perturbation", sort=False)]
    return LineChart(
        title="Decision flips under perturbations of every feature",
        x_label="strength (noise: standard deviations; category flip: probability per cell)",
        y_label="share of decisions that change",
        series=series,
    )


def tabular_fragility_chart(result, *, top_k: int = 12) -> BarChart:
    """Per feature: the share of decisions a change of that feature alone flips."""
    f = result.features.head(top_k)
    names = list(f["feature"])
    return BarChart(
        title="Most fragile features (shift or swap of one feature)",
        categories=names,
        series=[Series("flip rate", names, list(f["fragility"]))],
        value_label="share of decisions that change",
        height=0.8 + 0.24 * len(names),
    )


def tabular_adversarial_chart(result, *, top_k: int = 12) -> BarChart:
    """Per free feature: the share of decisions that changing it alone (within its range) flips."""
    f = result.features.head(top_k)
    names = list(f["feature"])
    return BarChart(
        title="Decisions flippable by changing one feature within its observed range",
        categories=names,
        series=[Series("flippable", names, list(f["flip_fraction"]))],
        value_label="share of searched decisions",
        value_range=(0.0, 1.0),
        height=0.8 + 0.24 * len(names),
    )


def text_robustness_chart(result) -> LineChart:
    """Accuracy and flip rate against severity per text perturbation."""
    t = result.table
    series = []
    for p, rows in t.groupby("perturbation", sort=False):
        series.append(Series(f"{pretty(p)} accuracy", [0.0, *rows["severity"].tolist()], [result.clean_accuracy, *rows["accuracy"].tolist()]))
        series.append(Series(f"{pretty(p)} flips", [0.0, *rows["severity"].tolist()], [0.0, *rows["flip_rate"].tolist()], dash=True))
    return LineChart(
        title="Text perturbations",
        x_label="probability a word is perturbed",
        y_label="accuracy / share of decisions that change",
        series=series,
        y_range=(0.0, 1.02),
    )


def text_robustness_group_chart(result) -> BarChart | None:
    """Flip rate per sensitive group at each text perturbation's strongest severity, with Wilson intervals (None without groups)."""
    from audits.stats import wilson_interval

    g = result.by_group
    if g.empty or "flip_rate" not in g.columns:
        return None
    g = g[g["severity"] == g.groupby("perturbation", sort=False)["severity"].transform("max")].dropna(subset=["flip_rate"])
    if g.empty:
        return None
    label = [f"{a}: {grp}" for a, grp in zip(g["attribute"], g["group"], strict=True)]
    g = g.assign(label=label)
    categories = list(dict.fromkeys(label))
    series = []
    for p, rows in g.groupby("perturbation", sort=False):
        lo, hi = wilson_interval(rows["flip_rate"].to_numpy() * rows["count"].to_numpy(), rows["count"].to_numpy())
        series.append(
            Series(f"{pretty(p)} (strength {rows['severity'].iloc[0]:.2g})", rows["label"].tolist(), rows["flip_rate"].tolist(), lo=list(lo), hi=list(hi))
        )
    return BarChart(
        title="Decisions that change per group, at each perturbation's strongest setting",
        categories=categories,
        series=series,
        value_label="share of decisions that change (95% interval)",
        value_range=(0.0, 1.0),
        height=0.9 + 0.22 * len(categories) * max(1, len(series)),
    )


def corruption_gallery_chart(gallery, class_names: list[str], *, title: str | None = None) -> ImageGrid:
    """One image under every corruption (rows) and severity (columns), each captioned with its prediction.

    ``gallery`` is an ``audits.gallery.CorruptionGallery``. Captions give the predicted class and
    its probability; a '*' marks a prediction that differs from the true label.
    """
    lo, hi = float(gallery.value_range[0]), float(gallery.value_range[1])
    cells = []
    for i, name in enumerate(gallery.corruptions):
        row = []
        for s in range(len(gallery.severities)):
            image = grey_or_rgb(np.clip((np.asarray(gallery.images[i, s], dtype=np.float64) - lo) / ((hi - lo) or 1.0), 0.0, 1.0))
            pred = int(gallery.predictions[i, s])
            caption = f"{'*' if pred != gallery.label else ''}{class_name(class_names, pred)} ({gallery.confidence[i, s]:.0%})"
            # The first column's caption stands in for the row label in the plotly drawing, so it names the corruption too.
            row.append(ImageCell(image, caption=f"{pretty(name)}: {caption}" if s == 0 else caption))
        cells.append(row)
    truth = class_name(class_names, gallery.label)
    return ImageGrid(
        title=title or f"Sample #{gallery.row} (true class {truth}) under each corruption",
        col_labels=[("clean" if s == 0 else f"severity {s}") for s in gallery.severities],
        row_labels=[pretty(c) for c in gallery.corruptions],
        cells=cells,
        legend="Caption: prediction (probability); * marks a prediction that differs from the true class.",
    )


# ---------------------------------------------------------------------------- views


@view(AttackResult)
def attack_view(r: AttackResult, ctx: RenderContext) -> list:
    """Robust accuracy per epsilon, per group, and adversarial examples (image models)."""
    curve = r.curve.copy()
    blocks: list = [
        KeyValues(
            [
                ("Norm / targeted", f"{pretty(r.norm)} / {'yes, class ' + str(r.target) if r.targeted else 'no'}"),
                ("Rows attacked", f"{len(r.rows):,}"),
                ("Clean accuracy", num(r.clean_accuracy)),
                ("Mean smallest flipping epsilon", num(r.mean_min_epsilon, 4)),
                ("Correct rows flipped within the sweep", pct(r.flipped_fraction)),
            ]
        )
    ]
    blocks += frame_table(curve, columns=["epsilon", "robust_accuracy", "attack_success_rate", "n"], caption="Robust accuracy per epsilon", digits=4)
    if not r.by_group.empty:
        blocks += figure(attack_group_chart(r))
    if r.examples is not None and len(r.examples.rows) and ctx.report.data_summary.modality == "image":
        vr = ctx.report.samples.value_range if ctx.report.samples is not None else [0.0, 1.0]
        blocks += figure(adversarial_examples_chart(r, ctx.class_names, vr))
    return blocks


@view(CorruptionResult)
def corruption_view(r: CorruptionResult, ctx: RenderContext) -> list:
    """Accuracy per corruption and severity, per group, and one image under every corruption."""
    t = r.table
    pivot = t.pivot_table(index="corruption", columns="severity", values="accuracy", sort=False)
    pivot.columns = [f"sev. {int(s)}" for s in pivot.columns]
    pivot["mean"] = pivot.mean(axis=1)
    pivot = pivot.reset_index()
    blocks: list = [
        KeyValues(
            [
                ("Rows", f"{len(r.rows):,}"),
                ("Clean accuracy", num(r.clean_accuracy)),
                ("Mean corruption accuracy (severities 1-5)", num(r.mean_corruption_accuracy)),
                ("Relative to clean", pct(r.relative_corruption_accuracy)),
            ]
        )
    ]
    blocks += frame_table(pivot, caption="Accuracy per corruption and severity")
    blocks += figure(corruption_chart(r))
    if not r.by_group.empty:
        blocks += figure(corruption_group_chart(r))
    if r.examples is not None and len(r.examples.rows):
        blocks += figure(corruption_examples_chart(r))
    return blocks


@view(CalibrationResult)
def calibration_view(r: CalibrationResult, ctx: RenderContext) -> list:
    """Accuracy, confidence and ECE under a shift, reliability curves, and clean calibration per group."""
    blocks = frame_table(r.conditions, caption=f"Calibration on clean data and under {pretty(r.shift)}")
    blocks += figure(calibration_shift_chart(r))
    blocks += figure(calibration_reliability_chart(r))
    if not r.by_group.empty:
        clean = r.by_group[r.by_group["condition"] == "clean"]
        blocks += frame_table(clean, columns=["attribute", "group", "accuracy", "mean_confidence", "ece", "count"], caption="Clean calibration per group")
    return blocks


@view(TabularPerturbationResult)
def tabular_perturbation_view(r: TabularPerturbationResult, ctx: RenderContext) -> list:
    """Decision flips under perturbations of every feature, and the fragility of each feature alone."""
    t = r.table[r.table["feature"] == "*"]
    blocks: list = [KeyValues([("Rows", f"{len(r.rows):,}"), ("Clean accuracy", num(r.clean_accuracy)), ("Missing-value policy", r.missing_policy)])]
    blocks += frame_table(t, columns=["perturbation", "strength", "accuracy", "flip_rate", "refused", "n"], caption="Every feature perturbed at once")
    blocks += figure(tabular_perturbation_chart(r))
    blocks += frame_table(r.features, caption="Fragility per feature (share of decisions a change of that feature alone flips)")
    return blocks


@view(TabularAdversarialResult)
def tabular_adversarial_view(r: TabularAdversarialResult, ctx: RenderContext) -> list:
    """Decisions flippable within the observed ranges, by one feature and jointly, overall and per group."""
    blocks: list = [
        KeyValues(
            [
                ("Decisions searched", f"{len(r.rows):,}"),
                (f"Flipped within {r.max_epsilon:g} sd on numeric features", pct(r.flippable_fraction)),
                ("Flipped by one feature", pct(r.single_feature_fraction)),
                ("Median smallest joint change (sd)", num(r.median_min_linf)),
                ("Categoricals", r.categoricals),
                ("Fixed features", ", ".join(r.fixed_features) or "none"),
            ]
        )
    ]
    blocks += figure(tabular_adversarial_chart(r))
    blocks += frame_table(r.by_group, caption="Per group: share flippable, share flippable by one feature, median smallest change")
    return blocks


@view(TextRobustnessResult)
def text_robustness_view(r: TextRobustnessResult, ctx: RenderContext) -> list:
    """Accuracy and flips per text perturbation and severity, with examples."""
    blocks = frame_table(r.table, caption="Accuracy and flips per perturbation and severity")
    blocks += figure(text_robustness_chart(r))
    if (groups := text_robustness_group_chart(r)) is not None:
        blocks += figure(groups)
    if not r.examples.empty:
        blocks += frame_table(r.examples, caption="Examples", max_rows=6)
    return blocks


@view(AutoAttackResult)
def autoattack_view(r: AutoAttackResult, ctx: RenderContext) -> list:
    """The attack view, then which attack broke the rows and the gradient-masking diagnostics."""
    blocks = attack_view(r, ctx)
    blocks.insert(
        1,
        KeyValues(
            [
                ("Preset / attacks", f"{r.preset}: {', '.join(r.attacks)}"),
                ("Rows only the gradient-free attack broke (largest share)", pct(r.gradient_free_gain)),
                ("Rows needing more than one APGD step (largest share)", pct(r.iteration_gain)),
                (f"Robust accuracy at epsilon {r.unbounded_epsilon:.3g} (any input reachable)", num(r.unbounded_robust_accuracy)),
            ]
        ),
    )
    wide = r.breakdown.pivot(index="epsilon", columns="attack", values="broken").reset_index()
    wide = wide[["epsilon", *[a for a in r.attacks if a in wide]]]
    blocks += frame_table(wide, caption="Share of rows broken first by each attack (in order, on the survivors)", digits=4)
    blocks += frame_table(
        r.curve, columns=["epsilon", "gradient_robust_accuracy", "one_step_robust_accuracy"], caption="Robust accuracy of the gradient attacks alone", digits=4
    )
    return blocks


@view(MinimalPerturbationResult)
def minimal_perturbation_view(r: MinimalPerturbationResult, ctx: RenderContext) -> list:
    """The median smallest flipping perturbation, its distribution and its per-group medians."""
    blocks: list = [
        KeyValues(
            [
                ("Norm", pretty(r.norm)),
                ("Rows evaluated", f"{len(r.rows):,}"),
                ("Clean accuracy", num(r.clean_accuracy)),
                ("Median smallest flipping perturbation", num(r.median_distance, 4)),
                ("Correct rows with a perturbation found", pct(r.found_fraction)),
            ]
        )
    ]
    blocks += frame_table(r.quantiles, caption="Distribution of the smallest flipping perturbation", digits=4)
    if not r.by_group.empty:
        blocks += frame_table(r.by_group, caption="Smallest flipping perturbation per group", digits=4)
    return blocks


def certified_accuracy_chart(result) -> LineChart:
    """Certified accuracy against the L2 radius, one line per noise level."""
    series = [
        Series(name=f"sigma {sigma:.3g}", x=rows["radius"].tolist(), y=rows["certified_accuracy"].tolist())
        for sigma, rows in result.curve.groupby("sigma", sort=True)
    ]
    return LineChart(
        title="Certified accuracy against the L2 radius (randomized smoothing)",
        x_label="L2 radius",
        y_label="certified accuracy",
        series=series,
        y_range=(0.0, 1.02),
    )


@view(SmoothingResult)
def smoothing_view(r: SmoothingResult, ctx: RenderContext) -> list:
    """Per noise level the smoothed accuracy, abstention and median radius; the certified-accuracy curve; per group."""
    blocks: list = [
        KeyValues(
            [
                ("Rows certified", f"{len(r.rows):,}"),
                ("Base model clean accuracy", num(r.clean_accuracy)),
                ("Noise samples per row / failure probability", f"{r.n_samples:,} / {r.alpha:g}"),
            ]
        )
    ]
    blocks += frame_table(r.summary, caption="Smoothed model per noise level", digits=4)
    blocks += figure(certified_accuracy_chart(r))
    blocks += frame_table(r.curve, caption="Certified accuracy per noise level and radius", digits=4)
    if not r.by_group.empty:
        blocks += frame_table(r.by_group, caption="Certified accuracy and abstention per group", digits=4)
    return blocks


def word_substitution_group_chart(result) -> BarChart:
    """Per sensitive attribute and group: the share of correct decisions the attack flipped."""
    t = result.by_group.dropna(subset=["attack_success_rate"])
    names = [f"{a}: {g}" for a, g in zip(t["attribute"], t["group"], strict=True)]
    return BarChart(
        title=f"Correct decisions flipped by at most {result.budget} synonym swaps, per group",
        categories=names,
        series=[Series("attack success rate", names, list(t["attack_success_rate"]))],
        value_label="share of correct decisions flipped",
        value_range=(0.0, 1.0),
        height=0.8 + 0.24 * len(names),
    )


@view(WordSubstitutionResult)
def word_substitution_view(r: WordSubstitutionResult, ctx: RenderContext) -> list:
    """Attack success rate and accuracy under attack, the words it swapped, per group, examples."""
    blocks: list = [
        KeyValues(
            [
                ("Texts attacked (correct when clean)", f"{r.n_correct:,} of {len(r.rows):,}"),
                ("Texts with a word that may be swapped", pct(float(r.attackable.mean()) if len(r.rows) else float("nan"))),
                ("Most swaps per text", str(r.budget)),
                ("Attack success rate", pct(r.attack_success_rate)),
                ("Accuracy clean / under attack", f"{num(r.clean_accuracy)} / {num(r.attacked_accuracy)}"),
                ("Swaps per successful attack (mean)", num(r.mean_substitutions, 2)),
            ]
        )
    ]
    if not r.words.empty:
        blocks += frame_table(r.words, caption="Swaps used by the successful attacks", max_rows=12)
    if not r.by_group.empty:
        blocks += figure(word_substitution_group_chart(r))
        blocks += frame_table(r.by_group, caption="Per group: clean accuracy, accuracy under attack, attack success rate")
    if not r.examples.empty:
        blocks += frame_table(r.examples, caption="Examples (flipped first)", max_rows=6)
    return blocks
