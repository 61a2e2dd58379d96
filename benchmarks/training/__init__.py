"""Training one (loss, seed) run: its parts (parts.py), PML's trainer around them
(trainer.py), what happens at each epoch's end (epochs.py), and the run itself,
from the seed to its record (run.py)."""
