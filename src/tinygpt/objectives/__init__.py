"""What the training loop can train for, one objective a module (training/objective.py is the interface)."""
