"""textlab's word2vec task: skip-gram with negative sampling, from raw corpus to neighbours.

Read it top to bottom: `data.py` (clean, count, encode, pair shards, where each step's files
live), `model.py` (the SGNS model and its compiled update kernels), `train.py` (the training
loop), `evaluate.py` (neighbours, analogies, word-pair similarity, export), `task.py` (the
verbs and hook implementations).
"""

__version__ = "0.1.0"
