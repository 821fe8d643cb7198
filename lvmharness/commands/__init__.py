"""The ``lvm`` subcommands whose library modules import torch at their top: argument parsing lives here (torch-free),
the work in ``run``, which imports the library when it runs. See ``lvmharness.commands.main`` for the pattern."""
