"""The settings ``pynn train`` keeps in a checkpoint, for tests that write checkpoints."""
from pynn import cli


def run_settings(**changes):
    """A small run's settings (pynn train's defaults, a 4-3-2 network on an IDX directory
    that is not there, 3 epochs), with ``changes``."""
    args = cli.build_parser().parse_args(["train"])
    settings = {k: getattr(args, k) for k in cli.RUN_SETTINGS}
    settings.update(arch=[4, 3, 2], dataset="idx", data_dir="/nonexistent", epochs=3)
    settings.update(changes)
    return settings
