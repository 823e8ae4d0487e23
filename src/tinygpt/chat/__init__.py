"""Chat: the format conversations are written in (template.py: special tokens and a Jinja chat
template in Hugging Face's convention) and conversations read from JSON Lines files
(conversations.py: TRL's and OpenAI's formats), and a run's reply to a conversation (reply.py:
`tinygpt chat`, `Run.chat`). Supervised fine-tuning on conversations is an objective of the
training loop: training/sft.py.
"""

from .conversations import Conversation, read_conversations
from .template import CHAT_TOKENS, END, ROLE_TOKENS, ROLES, ChatFormat, check_messages, default_template

__all__ = ["CHAT_TOKENS", "END", "ROLES", "ROLE_TOKENS", "ChatFormat", "Conversation", "check_messages",
           "default_template", "read_conversations"]
