"""textlab's word2vec task: skip-gram with negative sampling, from raw corpus to neighbours.

Read it top to bottom: `config.py` (the model's configuration and every verb's options),
`data.py` (clean, count, encode, pair shards, where each step's files live), `kernels.py` and
`model.py` (the SGNS model and its compiled update kernels), `train.py` (the run's corpus and
the Hogwild training loop), `evaluate.py` (neighbours, analogies, word-pair similarity, export),
`embed.py` (vectors for other tasks), `report.py` (tables), `task.py` (the verbs and hook
implementations).
"""

__version__ = "0.2.0"
