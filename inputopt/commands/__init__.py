"""The command lines of the ``inputopt`` subcommands (:data:`inputopt.cli.SUBCOMMANDS`), one module each:
:mod:`~inputopt.commands.fit`, :mod:`~inputopt.commands.sweep`, :mod:`~inputopt.commands.runners` (``attack`` and
``examples``) and :mod:`~inputopt.commands.layers`."""
