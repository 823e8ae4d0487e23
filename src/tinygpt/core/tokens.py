"""Every special token tinygpt adds to a vocabulary, and the target id that is never scored.

    MASK                         an encoder's hidden token (`tinygpt fill`, BERT's recipe)
    BOS, EOS                     an encoder-decoder's target starts from BOS and ends with EOS
    ROLE_TOKENS, END             the chat format: <|system|> <|user|> <|assistant|> open a message, <|end|> ends it
    IGNORE                       a target that is not scored (F.cross_entropy's ignore_index)

A tokenizer holds these as special tokens (never split, never made of the text's characters); the
modules that use them import them from here.
"""

MASK = "<mask>"
BOS, EOS = "<|bos|>", "<|eos|>"
ROLES = ("system", "user", "assistant")
ROLE_TOKENS = {role: f"<|{role}|>" for role in ROLES}
END = "<|end|>"
CHAT_TOKENS = [*ROLE_TOKENS.values(), END]
IGNORE = -100
