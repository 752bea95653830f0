"""``python -m semantica.control``: the same as ``semctl``."""

from semantica.control.cli import main

main()
