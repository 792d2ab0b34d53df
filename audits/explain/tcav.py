"""TCAV: does a human concept (an attribute value, or a set of example inputs) move a class's logit at a layer?"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Literal

import numpy as np
from scipy import stats

from audits.errors import AuditError
from audits.explain._layers import activations_and_gradients, concept_layer
from audits.probes import Probe, RunContext, register
from audits.results.concepts import TCAVResult

if TYPE_CHECKING:
    from audits.data import AuditData
    from models.loader import ModelHandle

_CONCEPT_FIX = (
    "Give concepts as 'column=value' of the evaluation attributes (e.g. 'site=C'), a bare column name (each of its values), "
    "or the path of a .npy/.npz file or a folder of them holding audit-space inputs (images (n, C, H, W) in the card's value range), "
    "or for a text model a .txt file (one example text a line) or a folder of them."
)


@register
class TCAV(Probe):
    """Testing with Concept Activation Vectors (Kim et al., 2018).

    A concept is a set of example inputs: the evaluation rows with one value of an attribute
    (``site=C``, ``identity_category=religion``; by default every value of every sensitive attribute),
    or inputs from a file or folder (for text models, a .txt file of example texts, one a line). At ``layer``
    (default: the card's target layer, else a transformer's last block, else the CAM layer of a CNN, else an
    MLP's first hidden layer; a text model's token states are averaged over each text's tokens) a linear
    classifier (a ridge classifier) separates the concept's activations from those of random evaluation
    rows; its normal, the concept activation vector
    (CAV), is a direction in the layer's space. A class's TCAV score is the share of its
    evaluation rows whose class logit rises when the activation moves along the CAV (a positive
    directional derivative). ``n_runs`` CAVs are trained, each against a fresh random set,
    and as many CAVs of random rows against random rows give the null distribution; a two-sided
    Welch t-test of the two sets of scores, Bonferroni-corrected over concepts and classes, says
    whether the concept matters for the class. Activations and gradients come from one batched
    forward and backward pass over at most ``max_rows`` random rows plus the concepts' examples and
    the scored rows; every CAV is then one small linear solve and every score a dot product.
    """

    name = "tcav"
    category: ClassVar = "concepts"
    result_type = TCAVResult
    modalities = ("image", "tabular", "text")
    default_for = ("image", "tabular", "text")
    title = "Concept tests (TCAV)"
    description = (
        "Tests whether a human concept - a value of an attribute of the evaluation data, such as an acquisition site or a group, or a folder of "
        "example inputs - is a direction at a hidden layer that raises or lowers each class's score: the TCAV score is the share of a class's rows "
        "whose score rises along the concept's activation vector, compared with random concepts by a t-test over repeated random splits (Kim et al., 2018)."
    )

    def __init__(
        self,
        *,
        concepts: list[str] | None = None,
        layer: str | None = None,
        n_examples: int = 50,
        n_runs: int = 30,
        rows_per_class: int = 50,
        alpha: float = 0.05,
        min_examples: int = 10,
        min_cav_accuracy: float = 0.6,
        max_rows: int = 2000,
        output: Literal["logit", "log_probability"] = "logit",
    ) -> None:
        self.concepts = concepts
        self.layer = layer
        self.n_examples = n_examples
        self.n_runs = n_runs
        self.rows_per_class = rows_per_class
        self.alpha = alpha
        self.min_examples = min_examples
        self.min_cav_accuracy = min_cav_accuracy
        self.max_rows = max_rows
        if max_rows < 2 * n_examples:
            raise ValueError("max_rows must be at least 2 * n_examples")
        self.output = output
        if output not in ("logit", "log_probability"):
            raise ValueError("output must be 'logit' or 'log_probability'")
        if n_runs < 2:
            raise ValueError("n_runs must be at least 2 (the t-test needs repeated runs)")
        if n_examples < 4 or min_examples < 4:
            raise ValueError("n_examples and min_examples must be at least 4")
        if not 0 < alpha < 1:
            raise ValueError("alpha must lie in (0, 1)")

    def check(self, model: ModelHandle, data: AuditData) -> str | None:
        reason = super().check(model, data)
        if reason is not None:
            return reason
        try:
            if concept_layer(model, self.layer) is None:
                return "the network exposes no layer to read (TorchScript and torch.export models hide their layers); name one in the probe's 'layer' parameter"
        except AuditError as exc:
            return f"{exc.problem} {exc.fix}"
        if self.concepts is None and not self._attribute_concepts(data, None)[0]:
            return f"no sensitive attribute value has at least {self.min_examples} evaluation rows to serve as a concept; give concepts in the probe's 'concepts' parameter"
        return None

    # ------------------------------------------------------------------ concepts

    def _attribute_concepts(self, data: AuditData, wanted: list[str] | None) -> tuple[list[tuple[str, str, bool, np.ndarray | None]], list[str]]:
        """(name, source, sensitive, rows) per attribute concept (rows None for file concepts: loaded later) and notes."""
        out: list[tuple[str, str, bool, np.ndarray | None]] = []
        notes: list[str] = []
        attrs = data.attributes
        specs = wanted if wanted is not None else list(data.sensitive)
        for spec in specs:
            if spec in attrs.columns or "=" in spec and spec.split("=", 1)[0] in attrs.columns:
                column, _, value = spec.partition("=")
                values = [value] if value else sorted(attrs[column].dropna().astype(str).unique())
                for v in values:
                    rows = np.flatnonzero(attrs[column].astype(str).to_numpy() == v)
                    if len(rows) < self.min_examples:
                        notes.append(f"Concept {column}={v} skipped: {len(rows)} rows, fewer than min_examples={self.min_examples}.")
                        continue
                    if len(rows) > len(data) - self.min_examples:
                        notes.append(f"Concept {column}={v} skipped: nearly every row has it, so no random rows are left to contrast.")
                        continue
                    out.append((f"{column}={v}", "attribute", column in data.sensitive, rows))
            elif wanted is not None:
                out.append((Path(spec).stem, spec, False, None))
        return out, notes

    def _file_examples(self, model: ModelHandle, path: str) -> np.ndarray:
        """Audit-space example inputs from a .npy/.npz file or a folder of them."""
        p = Path(path).expanduser()
        suffixes = (".txt",) if model.modality == "text" else (".npy", ".npz")
        files = sorted(f for f in p.iterdir() if f.suffix in suffixes) if p.is_dir() else [p]
        if not p.exists() or not files:
            raise AuditError(f"Concept {path!r} is neither an evaluation attribute nor a {'/'.join(suffixes)} file or folder of them.", fix=_CONCEPT_FIX)
        if model.modality == "text":
            lines = [line.strip() for f in files for line in f.read_text(encoding="utf-8").splitlines()]
            return model.tokenize([line for line in lines if line])
        arrays = []
        for f in files:
            if f.suffix == ".npz":
                with np.load(f) as z:
                    arrays += [np.asarray(z[k]) for k in z.files]
            else:
                arrays.append(np.load(f, allow_pickle=False))
        x = np.concatenate([a.reshape(-1, *model.input_shape) if a.size % int(np.prod(model.input_shape)) == 0 else a for a in arrays]).astype(np.float32)
        if x.shape[1:] != tuple(model.input_shape):
            raise AuditError(f"Concept examples in {path!r} have shape {x.shape[1:]}, the model takes {tuple(model.input_shape)}.", fix=_CONCEPT_FIX)
        return x

    # ------------------------------------------------------------------ run

    def _run(self, model: ModelHandle, data: AuditData, context: RunContext) -> TCAVResult:
        rng = context.rng("tcav")
        layer_name, layer = concept_layer(model, self.layer)
        concepts, notes = self._attribute_concepts(data, self.concepts)
        if not concepts:
            raise AuditError("No concept has enough examples.", fix=_CONCEPT_FIX + f" Each needs at least min_examples={self.min_examples} rows.")
        n_classes = len(data.class_names)
        # Rows scored per class: up to rows_per_class evaluation rows of that label.
        class_rows = [rng.permutation(np.flatnonzero(data.y == k))[: self.rows_per_class] for k in range(n_classes)]
        scored = np.concatenate(class_rows)
        # Examples: each concept's rows (subsampled) and the random pools.
        # The random rows (and each concept's examples) come from at most max_rows rows: one pass over them bounds the cost.
        pool = np.arange(len(data)) if len(data) <= self.max_rows else np.sort(rng.choice(len(data), self.max_rows, replace=False))
        concept_rows = {
            name: (rows if len(rows) <= self.max_rows else np.sort(rng.choice(rows, self.max_rows, replace=False)))
            for name, _, _, rows in concepts
            if rows is not None
        }
        needed = np.unique(np.concatenate([scored, pool, *concept_rows.values()]))
        context.report(0.1, f"activations and gradients at {layer_name} for {len(needed)} rows")
        targets = data.y[needed]
        acts, grads = activations_and_gradients(model, layer_name, layer, data.x[needed], targets, log_probability=self.output == "log_probability")
        position = {int(r): i for i, r in enumerate(needed)}
        act_of = lambda rows: acts[[position[int(r)] for r in rows]]  # noqa: E731
        class_grads = [grads[[position[int(r)] for r in rows]] for rows in class_rows]

        names, sources, sensitive, counts, cavs, accuracy = [], [], [], [], [], []
        for i, (name, source, is_sensitive, rows) in enumerate(concepts):
            context.report(0.3 + 0.5 * i / len(concepts), f"CAVs of {name}")
            if rows is None:
                examples = self._file_examples(model, source)
                ex_acts, _ = activations_and_gradients(model, layer_name, layer, examples, np.zeros(len(examples), np.int64))
                excluded: set[int] = set()
            else:
                ex_acts = act_of(concept_rows[name])
                excluded = set(int(r) for r in rows)
            if len(ex_acts) < self.min_examples:
                notes.append(f"Concept {name} skipped: {len(ex_acts)} examples, fewer than min_examples={self.min_examples}.")
                continue
            others = pool[~np.isin(pool, np.fromiter(excluded, dtype=np.int64, count=len(excluded)))]
            run_cavs, run_acc = [], []
            for _ in range(self.n_runs):
                pos = ex_acts[rng.choice(len(ex_acts), size=min(self.n_examples, len(ex_acts)), replace=False)]
                neg = act_of(rng.choice(others, size=min(self.n_examples, len(others)), replace=False))
                cav, acc = _train_cav(pos, neg, rng)
                run_cavs.append(cav)
                run_acc.append(acc)
            names.append(name)
            sources.append(source)
            sensitive.append(is_sensitive)
            counts.append(len(ex_acts))
            cavs.append(run_cavs)
            accuracy.append(run_acc)
        if not names:
            raise AuditError("No concept has enough examples.", fix=_CONCEPT_FIX)
        context.report(0.85, "random CAVs")
        random_cavs = []
        for _ in range(self.n_runs):
            a, b = rng.choice(pool, size=(2, min(self.n_examples, len(pool) // 2)), replace=False)
            random_cavs.append(_train_cav(act_of(a), act_of(b), rng)[0])

        concept_cavs = np.asarray(cavs)  # (concepts, runs, D)
        scores = np.stack([_scores(g, concept_cavs) for g in class_grads], axis=1)  # (concepts, classes, runs)
        random_scores = np.stack([_scores(g, np.asarray(random_cavs)[None])[0] for g in class_grads])  # (classes, runs)
        p = np.ones(scores.shape[:2])
        for c in range(scores.shape[0]):
            for k in range(n_classes):
                p[c, k] = _two_sided_p(scores[c, k], random_scores[k])
        separable = np.asarray(accuracy, dtype=np.float64).mean(axis=1) >= self.min_cav_accuracy
        # Bonferroni over every concept and class; a concept the layer cannot tell from random rows has no direction to test.
        significant = (p < self.alpha / p.size) & separable[:, None]
        for c in np.flatnonzero(~separable):
            notes.append(
                f"Concept {names[c]}: held-out CAV accuracy {np.mean(accuracy[c]):.2f} < min_cav_accuracy={self.min_cav_accuracy}; the layer does not separate it from random rows, so it is never marked significant."
            )
        empty = [data.class_names[k] for k in range(n_classes) if not len(class_rows[k])]
        if empty:
            notes.append(f"Classes without evaluation rows (scores undefined): {', '.join(empty)}.")
        return TCAVResult(
            method=self.name,
            params=self.params,
            seed=context.seed,
            layer=layer_name,
            concepts=names,
            concept_sources=sources,
            sensitive=sensitive,
            n_examples=counts,
            class_names=list(data.class_names),
            class_rows=np.array([len(r) for r in class_rows], dtype=np.int64),
            scores=scores.astype(np.float64),
            random_scores=random_scores.astype(np.float64),
            p_values=p,
            significant=significant,
            cav_accuracy=np.asarray(accuracy, dtype=np.float64),
            alpha=self.alpha,
            notes=notes,
        )


def _train_cav(pos: np.ndarray, neg: np.ndarray, rng: np.random.Generator, ridge: float = 1.0) -> tuple[np.ndarray, float]:
    """A unit CAV (pointing towards the concept) and its accuracy on a held-out third.

    The linear classifier is a ridge classifier (least squares on +-1 targets with an intercept,
    as scikit-learn's RidgeClassifier), solved in closed form in its dual (examples << layer width),
    so a CAV costs one small linear solve; ``ridge`` is relative to the mean squared row norm.
    """
    x = np.concatenate([pos, neg]).astype(np.float64)
    y = np.r_[np.ones(len(pos)), -np.ones(len(neg))]
    order = rng.permutation(len(y))
    held, fit = order[: len(y) // 3], order[len(y) // 3 :]
    xf, yf = x[fit], y[fit]
    mu = xf.mean(axis=0)
    xc = xf - mu
    gram = xc @ xc.T
    lam = ridge * (float(np.trace(gram)) / len(fit) or 1.0)
    dual = np.linalg.solve(gram + lam * np.eye(len(fit)), yf - yf.mean())
    w = xc.T @ dual
    b = yf.mean() - mu @ w
    acc = float((np.sign(x[held] @ w + b) == y[held]).mean()) if len(held) else float("nan")
    norm = float(np.linalg.norm(w))
    return (w / norm if norm > 0 else w), acc


def _scores(class_grads: np.ndarray, cavs: np.ndarray) -> np.ndarray:
    """(concepts, runs): the share of the class's rows with a positive directional derivative along each CAV."""
    if not len(class_grads):
        return np.full(cavs.shape[:2], np.nan)
    derivative = np.einsum("nd,crd->crn", class_grads.astype(np.float64), cavs)
    return (derivative > 0).mean(axis=2)


def _two_sided_p(a: np.ndarray, b: np.ndarray) -> float:
    """Welch's two-sided t-test p-value of two sets of run scores (1 when undefined: both constant and equal, or empty)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        return 1.0
    if a.std() == 0 and b.std() == 0:
        return 1.0 if a.mean() == b.mean() else 0.0
    with warnings.catch_warnings():  # nearly constant scores: scipy warns of precision loss, the p-value stands
        warnings.simplefilter("ignore", RuntimeWarning)
        p = float(stats.ttest_ind(a, b, equal_var=False).pvalue)
    return p if np.isfinite(p) else 1.0
