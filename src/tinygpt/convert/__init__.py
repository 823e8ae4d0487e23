"""Models from and to elsewhere: the Hugging Face Hub (hub.py) and GPT-2 checkpoints (gpt2.py)."""
