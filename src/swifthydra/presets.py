"""Named SwiftHydra settings that the command line and the demo share."""

from __future__ import annotations

#: A small Swift Hydra for a quick look (``swifthydra demo --quick``, ``swifthydra fit --quick``):
#: fewer episodes and epochs, by benchmark-registry model name.
QUICK_PARAMS = {
    "swifthydra": {
        "episodes": 2,
        "generation_params": {"cvae_epochs": 20, "ppo_iterations": 3},
        "detector_params": {"max_epochs": 15},
        "mome_params": {"max_epochs": 15},
    }
}
