"""What every other part stands on, importing nothing above it: the errors users see, the version,
special tokens, where to compute (devices, threads), processes working together (DDP and FSDP), and
names on the Hugging Face Hub."""
