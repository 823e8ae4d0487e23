"""Small, runnable lessons that rebuild the ideas behind a GPT from scratch."""
