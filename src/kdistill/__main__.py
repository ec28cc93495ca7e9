"""``python -m kdistill ...`` (what ``torchrun -m kdistill`` and ``srun python -m kdistill`` run)."""

from kdistill.cli import main

main()
