"""Seeing inside a trained run: numbers first, pictures drawn from them.

- `probe`: pure data from a model: a prompt's tokens, next-token probabilities, one forward pass
  recorded stage by stage (attention weights included), embedding neighbours and a 2-D PCA.
- `plots`: matplotlib pictures of that data (attention maps, embeddings, loss curves); every draw
  function writes a PNG and returns the data it drew.
- `explain`: the walkthrough of `tinygpt explain`, in words, with a model's real numbers.
- `subject`: the default model to look at, the nursery-rhyme run, trained once if missing.
- `tensorboard`: the optional TensorBoard mirror of a run's metrics.
"""
