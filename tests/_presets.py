"""Model settings shared by test files (imported as a plain module: tests/ is on sys.path)."""

# The smallest SwiftHydra that still runs every stage (C-VAE, PPO, fine-tuning, MoME): for tests
# about input handling, contracts and files, not accuracy. It names the paper's generator ("rl"),
# which the default ("none") skips, so these tests go through the whole loop.
MICRO = dict(
    generator="rl",
    episodes=1,
    generation_params={"ppo_iterations": 1, "num_envs": 4, "horizon": 2, "latent_dim": 2, "cvae_epochs": 2,
                       "finetune_epochs": 1},
    detector_params={"max_epochs": 2, "min_epochs": 1, "d_model": 4, "n_layers": 1,
                     "tokenizer": "feature", "batch_size": 64},
    mome_params={"max_epochs": 2, "min_epochs": 1, "d_model": 4, "n_experts": 2},
)

_GROUPS = ("generation_params", "detector_params", "mome_params")


def merged(*settings: dict) -> dict:
    """SwiftHydra settings one over the other, the three parameter dicts merged key by key."""
    out: dict = {}
    for s in settings:
        for k, v in s.items():
            out[k] = {**(out.get(k) or {}), **v} if k in _GROUPS and v is not None else v
    return out
