"""Models from and to elsewhere: GPT-2 checkpoints in and out (gpt2.py), exports for transformers
(hf_export.py, hf_tokenizer.py, modeling_tinygpt.py) and llama.cpp (gguf_export.py), chosen by export.py
from what source.py reads. Names on the Hugging Face Hub: core/hub.py."""
