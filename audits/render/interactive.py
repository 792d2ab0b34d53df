"""Interactive ``result -> figure`` functions (plotly) for views the report figures do not cover.

The dashboard shows these; the HTML report may reuse them. Each takes typed results (or
plain arrays cut from them) and returns a ``plotly.graph_objects.Figure``; nothing here
computes a measurement, it only draws one. Every figure has a title, labelled axes or a
labelled colour bar, and units where there are any.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import plotly.graph_objects as go

from audits.results.attribution import AttributionResult

Mode = Literal["signed", "absolute"]
# Offered colour scales: diverging ones for signed maps (red raises the explained class),
# sequential ones for magnitudes.
SIGNED_SCALES = {"red-blue": "RdBu_r", "purple-green": "PRGn", "orange-purple": "PuOr_r"}
ABSOLUTE_SCALES = {"inferno": "Inferno", "viridis": "Viridis", "hot": "Hot", "greys": "Greys"}
POSITIVE, NEGATIVE, NEUTRAL = "#c0392b", "#2471a3", "#7f8c8d"
_FONT = dict(size=12)


def _layout(fig: go.Figure, title: str, *, height: int, margin: dict | None = None) -> go.Figure:
    fig.update_layout(
        title=dict(text=title, x=0.0, xanchor="left", font=dict(size=14)),
        height=height,
        margin=margin or dict(l=10, r=10, t=50, b=10),
        font=_FONT,
        template="plotly_white",
    )
    return fig


def _image_trace(image: np.ndarray, value_range: tuple[float, float], *, showscale: bool = False, name: str = "input") -> go.Heatmap | go.Image:
    """(C, H, W) pixel-space image as a trace: grey heatmap for one channel, RGB otherwise."""
    lo, hi = value_range
    if image.shape[0] == 1:
        return go.Heatmap(
            z=image[0],
            colorscale="Greys",
            reversescale=True,
            zmin=lo,
            zmax=hi,
            showscale=showscale,
            name=name,
            hovertemplate="x %{x}, y %{y}<br>pixel %{z:.3f}<extra></extra>",
        )
    rgb = np.clip((np.moveaxis(image[:3], 0, -1) - lo) / (hi - lo), 0, 1)
    return go.Image(z=(rgb * 255).astype(np.uint8), name=name, hoverinfo="skip")


def _image_axes(fig: go.Figure, row: int | None = None, col: int | None = None) -> None:
    kwargs = {} if row is None else dict(row=row, col=col)
    fig.update_xaxes(showticklabels=False, showgrid=False, zeroline=False, constrain="domain", **kwargs)
    fig.update_yaxes(
        showticklabels=False, showgrid=False, zeroline=False, autorange="reversed", scaleanchor="x" if row is None else None, constrain="domain", **kwargs
    )


def fading_scale(name: str, mode: Mode, steps: int = 21) -> list[list]:
    """Plotly colour scale ``name`` with transparency growing with |value|.

    Where the attribution is near zero the input image shows through unchanged; strong
    attributions are drawn in full colour (the trace's opacity caps the overall strength).
    """
    from plotly.colors import sample_colorscale, unlabel_rgb

    points = np.linspace(0.0, 1.0, steps)
    colours = sample_colorscale(name, list(points))
    scale = []
    for p, colour in zip(points, colours, strict=True):
        r, g, b = (int(round(c)) for c in unlabel_rgb(colour))
        alpha = abs(2 * p - 1) if mode == "signed" else p
        scale.append([float(p), f"rgba({r},{g},{b},{min(1.0, 0.15 + alpha):.3f})"])
    return scale


def scaled_map(attribution: np.ndarray, mode: Mode) -> np.ndarray:
    """An attribution map scaled by its own max |value| (signed: [-1, 1]; absolute: [0, 1])."""
    scale = float(np.abs(attribution).max()) or 1.0
    scaled = attribution / scale
    return np.abs(scaled) if mode == "absolute" else scaled


def attribution_overlay_figure(
    result: AttributionResult,
    row: int,
    image: np.ndarray,
    value_range: tuple[float, float] = (0.0, 1.0),
    *,
    opacity: float = 0.6,
    mode: Mode = "signed",
    colorscale: str | None = None,
    title: str | None = None,
    height: int = 340,
) -> go.Figure:
    """One method's map for explained sample ``row`` laid over the input image.

    Signed maps use a diverging scale centred on zero (with the default scale red raises the
    explained class, blue lowers it); absolute maps show magnitude. Each map is scaled by
    its own max |value| so methods are comparable in shape.
    """
    attr = np.asarray(result.attributions[row], dtype=np.float64)
    scaled = scaled_map(attr, mode)
    scale = fading_scale(colorscale or ("RdBu_r" if mode == "signed" else "Inferno"), mode)
    fig = go.Figure()
    fig.add_trace(_image_trace(image, value_range))
    bounds = dict(zmin=-1.0, zmax=1.0, zmid=0.0) if mode == "signed" else dict(zmin=0.0, zmax=1.0)
    fig.add_trace(
        go.Heatmap(
            z=scaled,
            colorscale=scale,
            opacity=opacity,
            name=result.method,
            colorbar=dict(
                title=dict(text="share of<br>max |attr|" if mode == "absolute" else "attribution<br>/ max |attr|", side="right"), thickness=12, len=0.9
            ),
            hovertemplate="x %{x}, y %{y}<br>scaled attribution %{z:.2f}<extra></extra>",
            **bounds,
        )
    )
    _image_axes(fig)
    return _layout(fig, title or result.method.replace("_", " "), height=height, margin=dict(l=5, r=5, t=45, b=5))


def _feature_label(name: str, raw_values: dict | None) -> str:
    if not raw_values or name not in raw_values:
        return name
    value = raw_values[name]
    if isinstance(value, float):
        value = f"{value:.4g}"
    return f"{name} = {value}"


def tabular_contribution_figure(
    result: AttributionResult,
    row: int,
    class_names: list[str],
    raw_values: dict | None = None,
    *,
    top_k: int = 10,
    kind: Literal["auto", "waterfall", "bar"] = "auto",
    title: str | None = None,
    height: int | None = None,
) -> go.Figure:
    """Per-feature contributions for one explained tabular sample.

    A waterfall from the base value (the expected output over the background) through the
    ``top_k`` largest contributions (the rest summed as 'other features') to the model's
    output, when the method records base values and outputs (SHAP, IG); otherwise signed bars.
    """
    attr = np.asarray(result.attributions[row], dtype=np.float64)
    order = np.argsort(-np.abs(attr))[:top_k]
    target = class_names[int(result.targets[row])]
    labels = [_feature_label(result.feature_names[i], raw_values) for i in order]
    unit = f"{result.output} of '{target}'"
    has_ends = result.base_values is not None and result.outputs is not None
    use_waterfall = kind == "waterfall" or (kind == "auto" and has_ends)
    height = height or int(140 + 30 * (len(order) + (3 if use_waterfall else 0)))
    if use_waterfall and has_ends:
        base = float(np.asarray(result.base_values).reshape(len(result.sample_indices), -1)[row][0])
        out = float(np.asarray(result.outputs).reshape(len(result.sample_indices), -1)[row][0])
        rest = float(attr.sum() - attr[order].sum())
        names = ["base value", *labels] + (["other features"] if len(attr) > len(order) else []) + [f"model output ({result.output})"]
        values = [base, *attr[order]] + ([rest] if len(attr) > len(order) else []) + [out]
        measures = ["absolute"] + ["relative"] * (len(values) - 2) + ["total"]
        fig = go.Figure(
            go.Waterfall(
                orientation="h", y=names, x=values, measure=measures,
                increasing=dict(marker=dict(color=POSITIVE)), decreasing=dict(marker=dict(color=NEGATIVE)), totals=dict(marker=dict(color=NEUTRAL)),
                text=[f"{v:+.3f}" if m == "relative" else f"{v:.3f}" for v, m in zip(values, measures, strict=True)],
                textposition="outside", cliponaxis=False, connector=dict(line=dict(color="#bbbbbb", width=1)),
            )
        )  # fmt: skip
        fig.update_yaxes(autorange="reversed", title_text="")
        # Zoom on the path from the base value to the output (the totals' bars are cut, their labels say them).
        path = np.concatenate([[base], base + np.cumsum(values[1:-1]), [out]])
        lo, hi = float(path.min()), float(path.max())
        pad = 0.12 * max(hi - lo, 1e-6)
        fig.update_xaxes(title_text=unit, range=[lo - pad, hi + 2 * pad])
        name = title or result.method.replace("_", " ")
        title = f"{name}: from base {base:.3f} to output {out:.3f}"
    else:
        fig = go.Figure(
            go.Bar(
                x=attr[order],
                y=labels,
                orientation="h",
                marker_color=[POSITIVE if v > 0 else NEGATIVE for v in attr[order]],
                text=[f"{v:+.3f}" for v in attr[order]],
                textposition="outside",
                cliponaxis=False,
            )
        )
        fig.update_yaxes(autorange="reversed", title_text="")
        fig.update_xaxes(title_text=f"contribution to the {unit}", zeroline=True, zerolinecolor="black")
        title = f"{title or result.method.replace('_', ' ')}: largest contributions"
    return _layout(fig, title, height=height, margin=dict(l=10, r=40, t=50, b=10))


def token_attribution_figure(result: AttributionResult, row: int, class_names: list[str], *, max_tokens: int = 40, height: int = 320) -> go.Figure:
    """Text: each token's attribution for explained sample ``row``, in reading order."""
    tokens = list(result.tokens[row]) if result.tokens else []
    attr = np.asarray(result.attributions[row], dtype=np.float64)[: len(tokens)][:max_tokens]
    tokens = tokens[: len(attr)]
    labels = [f"{i}:{t}" for i, t in enumerate(tokens)]
    fig = go.Figure(go.Bar(x=labels, y=attr, marker_color=[POSITIVE if v > 0 else NEGATIVE for v in attr], hovertemplate="%{x}: %{y:.3f}<extra></extra>"))
    fig.update_xaxes(title_text="token (position:text)", tickangle=-45)
    fig.update_yaxes(title_text=f"contribution to {result.output} of '{class_names[int(result.targets[row])]}'", zeroline=True, zerolinecolor="black")
    return _layout(fig, f"{result.method.replace('_', ' ')}: token attributions", height=height)
