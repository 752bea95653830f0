"""``python -m semantica.control``: the same as ``semctl``."""

from semantica.control.entry import main

main()
