"""``swifthydra info``: what a model directory is (kind, version, training, threshold, history),
read without loading the model; every checksum is verified."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from swifthydra.cli._common import guarded
from swifthydra.cli._table import PREPROCESSING_FILE
from swifthydra.exceptions import InvalidInputError


def info(
    model_dir: Annotated[Path, typer.Argument(help="Model directory.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print everything as one JSON object.")] = False,
) -> None:
    """What a model is: kind, version, when and on what it was trained, threshold, history."""
    import json

    from swifthydra.hydra import MODEL_KIND
    from swifthydra.io import load_model_dir, read_model_json

    meta, tensors = load_model_dir(model_dir, MODEL_KIND)  # verifies every checksum
    power_columns = [int(j) for j in tensors["power.columns"].tolist()] if "power.columns" in tensors else []
    del tensors
    state = read_model_json(model_dir, PREPROCESSING_FILE, MODEL_KIND)
    names = (state or {}).get("feature_names") or []
    power_features = [names[j] if j < len(names) else f"x{j}" for j in power_columns]
    cfg = meta["config"]
    params = cfg.get("params", {})
    mome = cfg.get("mome")
    scorer = (
        f"MoME, {mome.get('architecture', {}).get('n_experts', '?')} experts "
        f"(top-{mome.get('params', {}).get('top_k', 1)}, {mome.get('params', {}).get('tokenizer', '?')} tokens)"
        if mome else "MambaDetector (large)"
    )
    history = cfg.get("history", [])
    summary = {
        "path": str(model_dir),
        "kind": meta["kind"],
        "format_version": meta["format_version"],
        "swifthydra_version": meta.get("swifthydra_version"),
        "created": meta.get("created"),
        "scorer": scorer,
        "n_features": cfg.get("n_features_in"),
        "threshold": cfg.get("threshold"),
        "contamination": params.get("contamination"),
        "episodes": params.get("episodes"),
        "generator": params.get("generator"),
        "best_episode": cfg.get("best_episode"),
        "pseudo_labels": cfg.get("used_pseudo_labels"),
        "power_transformed_features": power_features,
        "density_prior": ({"weight": cfg["prior"].get("weight"), "auc": cfg["prior"].get("auc"),
                           "tail_from": cfg["prior"].get("tail_from")}
                          if cfg.get("prior") else None),
        "checksums": "ok",
        "history": history,
    }
    if state is not None:
        pre = state.get("preprocessor", {})
        summary["table"] = {
            "training": state.get("training"),
            "label_column": state.get("label_column"),
            "id_column": state.get("id_column"),
            "numeric_columns": pre.get("numeric_columns"),
            "categorical_columns": {c: len(v) for c, v in _categories(pre).items()},
            "datetime_columns": [c for c, _ in pre.get("datetimes", [])],
            "dropped_columns": pre.get("dropped_columns", []),
            "constant_columns": pre.get("constant_columns", []),
            "formatted_numbers": pre.get("number_formats", {}),
            "time_zones": pre.get("time_zones", {}),
            "non_numeric": pre.get("categorical"),
            "missing": pre.get("missing"),
            "feature_names": state.get("feature_names"),
        }
    if as_json:
        typer.echo(json.dumps(summary, indent=2, default=str))
        return
    lines = [
        f"model          {summary['kind']} (format {summary['format_version']}), written by swifthydra "
        f"{summary['swifthydra_version']} on {summary['created']}",
        f"scorer         {scorer}; {summary['n_features']} features",
        f"threshold      {summary['threshold']:.6g} (score > threshold = anomaly; contamination {summary['contamination']})",
        (f"training       {max(len(history) - 1, 0)} of {summary['episodes']} episodes run (generator {summary['generator']}), "
         f"best episode {summary['best_episode']}, " if summary["generator"] != "none" else
         "training       no generated anomalies (generator none), ")
        + f"pseudo-labels {'yes' if summary['pseudo_labels'] else 'no'}",
    ]
    lines.append(
        f"skewed columns Yeo-Johnson on {len(power_features)}: {_short_list(power_features)}"
        if power_features else "skewed columns none transformed (standardisation only)"
    )
    prior = summary["density_prior"]
    if prior:
        auc = prior["auc"]
        lines.append(f"density prior  k-NN distance to the unlabeled rows, weight {prior['weight']:.3g}"
                     + (f" (separates the {'pseudo-labelled' if summary['pseudo_labels'] else 'known'} anomalies "
                        f"with AUC {auc:.3f})" if auc is not None else "")
                     + ("; rows farther than every unlabeled training row at full weight"
                        if prior.get("tail_from") is not None else ""))
    else:
        lines.append("density prior  none (the network's score alone)")
    if state is not None:
        t = summary["table"]
        tr = t["training"] or {}
        lines.append(
            f"trained on     {tr.get('file')}: {tr.get('rows')} rows ({tr.get('rows_used')} used), "
            f"{tr.get('known_anomalies')} known anomalies, {tr.get('seconds')} s"
        )
        lines.append(f"label column   {t['label_column'] or '(none)'}; id column {t['id_column'] or '(none)'}")
        lines.append(f"numeric        {len(t['numeric_columns'])}: {_short_list(t['numeric_columns'])}")
        cats = t["categorical_columns"]
        lines.append(
            f"categorical    {len(cats)}: "
            + (_short_list([f"{c} ({n} categories + __other__)" for c, n in cats.items()]) if cats else "-")
        )
        if t["datetime_columns"]:
            lines.append(
                f"datetime       {len(t['datetime_columns'])}: {_short_list(t['datetime_columns'])} "
                "(each -> hour, weekday, elapsed_days)"
            )
        if t["dropped_columns"]:
            lines.append(f"dropped        {_short_list(t['dropped_columns'])}")
        if t["constant_columns"]:
            lines.append(f"left out       {_short_list(t['constant_columns'])} (empty or a single value in training)")
        if t["formatted_numbers"]:
            lines.append(
                "formatted      " + _short_list([f"{c} (decimal {m!r})" for c, m in t["formatted_numbers"].items()])
                + " (numbers written with separators or a currency sign)"
            )
        lines.append(
            f"missing values {'imputed (training median; __missing__ category)' if t['missing'] == 'impute' else 'rejected'}"
        )
        if tr.get("command"):
            lines.append(f"command        {tr['command']}")
    else:
        lines.append("table          (saved from Python: no table preprocessing; `swifthydra score` cannot use it)")
    lines.append("checksums      ok")
    lines.append("history")
    keys = ("episode", "kept", "generated_total", "detector_loss", "val_auc", "seconds")
    lines.append("  " + "  ".join(f"{k:>15s}" for k in keys))
    for row in history:
        cells = []
        for k in keys:
            v = row.get(k)
            cells.append(f"{'-' if v is None else (f'{v:.4g}' if isinstance(v, float) else v):>15}")
        lines.append("  " + "  ".join(cells))
    typer.echo("\n".join(lines))


def _categories(pre: dict) -> dict[str, list]:
    """The categories of a stored preprocessing, in feature order (a list of pairs; older files:
    an object)."""
    from swifthydra.tabular.table import TablePreprocessor

    try:
        return TablePreprocessor.from_dict(pre).categories_
    except InvalidInputError:
        return {}


def _short_list(items: list[str], n: int = 12) -> str:
    items = [str(i) for i in items]
    return ", ".join(items[:n]) + (f", ... ({len(items) - n} more)" if len(items) > n else "")


def register(app: typer.Typer) -> None:
    """Add ``info`` to a Typer app, wrapped by :func:`~swifthydra.cli._common.guarded` (one-line errors)."""
    app.command("info")(guarded(info))
