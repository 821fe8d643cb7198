"""The ``lvm`` command line: ``main`` (the dispatcher) and one module per subcommand, each parsing its arguments
and rendering what the library computed. A subcommand's module imports torch only inside ``run``, so its ``--help``
answers without it. See ``lvmharness.commands.main`` for the pattern."""
