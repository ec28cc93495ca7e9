"""Language models: tokenizers, the causal-LM task, vocabulary checks, corpora and embedding distillation.

Importing ``kdistill.lm.task`` registers the ``causal-lm`` task.
"""
