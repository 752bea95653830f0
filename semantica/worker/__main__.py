"""``python -m semantica.worker``: a worker process (started by semanticad only)."""

from semantica.worker.runner import main

main()
