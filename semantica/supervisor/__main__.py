"""``python -m semantica.supervisor``: the same as ``semanticad``."""

from semantica.supervisor.cli import main

main()
