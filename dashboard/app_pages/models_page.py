"""Models: every model on offer with its card, identity, load status and last audit verdict;
register a new one by uploading a card, its weights and its evaluation data."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st
import yaml

from audits.uploads import MAX_UPLOAD_MB, UPLOAD_FORMATS, UploadedFile
from dashboard import auth, cache, state, workspace
from dashboard.feedback import show_error

auth.require_signed_in()  # the gate again, however this script is reached


def _pick(name: str) -> None:
    state.put("model", name)
    state.reset_model_settings()
    st.session_state["_models.goto_inspect"] = True


if st.session_state.pop("_models.goto_inspect", False):
    st.switch_page(str(Path(__file__).resolve().parent / "inspect_page.py"))

st.title("Models")
st.caption("The demo zoo and the models registered here. Loading happens once per weights file (by its sha256) and is shared by every page.")

entries = workspace.catalog()
store = workspace.store()
rows, problems = [], {}
for name, entry in entries.items():
    row = {
        "model": name,
        "source": entry.source,
        "modality": "",
        "format": "",
        "parameters": None,
        "weights sha256": "",
        "device": "",
        "status": "",
        "last audit": "not audited",
    }
    try:
        loaded = cache.load(entry.card_path)
        card, handle = loaded.card, loaded.handle
        row.update(modality=card.modality, format=card.format, parameters=handle.parameter_count, device=str(handle.device), status="loaded")
        row["weights sha256"] = handle.weights_sha256[:16] + "…"
        last = store.latest(name, weights_sha256=handle.weights_sha256)
        if last is not None:
            row["last audit"] = f"{last.verdict} ({last.created_at[:16].replace('T', ' ')}, {last.report_id})"
    except Exception as exc:  # a model that does not load is listed with its error
        row["status"] = "error"
        problems[name] = exc
    rows.append(row)

table = pd.DataFrame(rows)
st.dataframe(
    table,
    hide_index=True,
    width="stretch",
    column_config={
        "parameters": st.column_config.NumberColumn("parameters", format="localized"),
        "last audit": st.column_config.TextColumn(
            "last audit verdict", help="Verdict of the newest stored audit of these exact weights: fail > warn > pass against the policy."
        ),
    },
)
for name, exc in problems.items():
    st.markdown(f"**{name}** does not load:")
    show_error(exc, f"Loading {name}")


st.subheader("Model cards")
for name, entry in entries.items():
    with st.expander(f"{name} ({entry.source})", expanded=False):
        try:
            text = entry.card_path.read_text()
        except OSError as exc:
            show_error(exc, "Reading the card")
            continue
        c1, c2 = st.columns([3, 1])
        with c1:
            st.code(text, language="yaml")
        with c2:
            st.button(
                "Inspect this model",
                key=f"models.pick.{name}",
                on_click=_pick,
                args=(name,),
                icon=":material/image_search:",
                disabled=state.get("model") == name,
            )
            if name in problems:
                st.caption("Not loadable: see the error above.")
            else:
                loaded = cache.load(entry.card_path)
                st.caption(f"sha256 `{loaded.handle.weights_sha256}`")
                st.caption(f"card: `{entry.card_path}`")

# --- register a model ------------------------------------------------------------------
st.subheader("Register a model")
st.markdown(
    f"Upload a **model card** (YAML), its **weights** and its **evaluation data**. Accepted weights: "
    f"safetensors (with an architecture from `models.architectures`), TorchScript (`.pt`) and `torch.export` (`.pt2`). "
    f"Pickles are refused. A predictions card (`format: predictions`: another system's scores, see docs/fairness.md) needs no weights: "
    f"upload the card and its table of scores. Each file may be at most {MAX_UPLOAD_MB} MB. The card's `weights` and `data` paths are replaced by the uploaded files; "
    "the model is loaded and checked (dry forward pass, data validation) before it is kept."
)
weight_types = sorted({ext.lstrip(".") for exts in UPLOAD_FORMATS.values() for ext in exts})
with st.form("register", clear_on_submit=False, border=True):
    u1, u2 = st.columns(2)
    card_file = u1.file_uploader("Model card (card.yaml)", type=["yaml", "yml"], max_upload_size=1)
    weights_file = u1.file_uploader("Weights (none for a predictions card)", type=weight_types, max_upload_size=MAX_UPLOAD_MB)
    data_file = u2.file_uploader(
        "Evaluation data (.npz for images; .csv, .csv.gz or .parquet for tables)", type=["npz", "csv", "gz", "parquet"], max_upload_size=MAX_UPLOAD_MB
    )
    attributes_file = u2.file_uploader("Image attributes (optional CSV, one row per image)", type=["csv"], max_upload_size=MAX_UPLOAD_MB)
    submitted = st.form_submit_button("Validate and register", type="primary", icon=":material/upload:")


def _blob(upload) -> UploadedFile | None:
    return None if upload is None else UploadedFile(name=upload.name, content=upload.getvalue())


if submitted:
    # The weights are checked against the card's format when it is read (a predictions card has none).
    missing = [label for label, f in (("a model card", card_file), ("the evaluation data", data_file)) if f is None]
    if missing:
        st.error(f"Upload {', '.join(missing)} to register a model.", icon=":material/error:")
    else:
        try:
            with st.spinner("Validating: reading the card, loading the weights, checking the data…"):
                card_path = store.register_model(_blob(card_file), _blob(weights_file), _blob(data_file), _blob(attributes_file), reserved_names=list(entries))
        except Exception as exc:  # every refusal is shown with its fix; nothing was kept
            show_error(exc, "Registering the model")
        else:
            name = yaml.safe_load(card_path.read_text()).get("name", card_path.parent.name)
            st.success(f"Registered {name}. It is now in the model picker.", icon=":material/check_circle:")
            st.button("Inspect it now", on_click=_pick, args=(name,))
