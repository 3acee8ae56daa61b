"""SwiftHydra's settings: the generation group's defaults and constraints, the model kind, and the
translation of parameters saved before version 0.2 (used by :mod:`swifthydra.hydra` and
:mod:`swifthydra.persistence`; imports neither)."""

from __future__ import annotations

from numbers import Integral, Real

from sklearn.utils._param_validation import Interval, StrOptions

from swifthydra.exceptions import InvalidInputError

MODEL_KIND = "swifthydra.SwiftHydra"

#: The generation loop's settings (``generation_params`` overrides any of them; docs/design.md §6-§8).
GENERATION_DEFAULTS: dict = {
    "top_l": None,  # generated anomalies kept per episode; None = clip(4 * known anomalies, 16, 128)
    "gamma": 0.9,  # reward decay: diversity weight lam * gamma^e, deception weight 1 - gamma^e
    "lam": 1.0,  # scale of the diversity (entropy-gain) term
    "generated_weight": 1.0,  # total weight of the generated rows relative to the known anomalies
    "deception": "log",  # -log W (the paper's), or "boundary": a bump on the detector's threshold
    "ppo_iterations": 8,  # PPO iterations per episode
    "num_envs": 64,  # parallel start points of the agent
    "horizon": 6,  # steps of each latent trajectory
    "latent_dim": 16,  # latent size of the C-VAE
    "cvae_epochs": 30,  # C-VAE epochs in episode 0
    "finetune_epochs": 1,  # epochs of fine-tuning W and G per episode
    "validation_fraction": 0.2,  # rows held out to choose the best episode (with enough labels)
    "min_validation_anomalies": 25,  # known anomalies needed for that hold-out
    "patience": 2,  # episodes without a better validation AUC before the loop stops
}
GENERATION_CONSTRAINTS: dict = {
    "top_l": [Interval(Integral, 1, None, closed="left"), None],
    "gamma": [Interval(Real, 0, 1, closed="neither")],
    "lam": [Interval(Real, 0, None, closed="left")],
    "generated_weight": [Interval(Real, 0, None, closed="left")],
    "deception": [StrOptions({"log", "boundary"})],
    "ppo_iterations": [Interval(Integral, 1, None, closed="left")],
    "num_envs": [Interval(Integral, 1, None, closed="left")],
    "horizon": [Interval(Integral, 1, None, closed="left")],
    "latent_dim": [Interval(Integral, 1, None, closed="left")],
    "cvae_epochs": [Interval(Integral, 1, None, closed="left")],
    "finetune_epochs": [Interval(Integral, 0, None, closed="left")],
    "validation_fraction": [Interval(Real, 0, 1, closed="left")],
    "min_validation_anomalies": [Interval(Integral, 2, None, closed="left")],
    "patience": [Interval(Integral, 1, None, closed="left")],
}
# keys SwiftHydra sets itself inside detector_params / mome_params (a value there would be ignored)
OWN_KEYS = ("random_state", "device", "contamination")

def no_bool_ints(constraints: dict, values: dict, what: str) -> None:
    """Refuse True/False where an int is asked (scikit-learn's Interval(Integral) takes bools)."""
    for k, c in constraints.items():
        if any(isinstance(x, Interval) and x.type is Integral for x in c) and isinstance(values.get(k), bool):
            raise InvalidInputError(f"{what.format(k)} must be an int, not a bool (got {values[k]!r}).")


#: Top-level parameters of before version 0.2 that moved: into generation_params, and n_experts
#: into mome_params
MOVED = frozenset(GENERATION_DEFAULTS) | {"n_experts"}


def moved_message(moved: dict) -> str:
    """The error for parameters given where they no longer live (before version 0.2)."""
    where = []
    gen = {k: v for k, v in moved.items() if k in GENERATION_DEFAULTS}
    if gen:
        where.append(f"generation_params={gen!r}")
    if "n_experts" in moved:
        where.append(f"mome_params={{'n_experts': {moved['n_experts']!r}}}")
    return (f"{', '.join(sorted(moved))} moved out of SwiftHydra's top-level parameters: pass "
            f"{' and '.join(where)} instead (SwiftHydra takes 15 parameters; the generation settings "
            "are one dict).")


def legacy_params(params: dict) -> dict:
    """Parameters as saved before version 0.2 (flat generation settings, ``n_experts``) in
    today's form; today's pass unchanged."""
    params = dict(params)
    gen = {k: params.pop(k) for k in list(params) if k in GENERATION_DEFAULTS}
    n_experts = params.pop("n_experts", None)
    if gen:
        params["generation_params"] = {**gen, **(params.get("generation_params") or {})}
    if n_experts is not None:
        params["mome_params"] = {"n_experts": n_experts, **(params.get("mome_params") or {})}
    return params
