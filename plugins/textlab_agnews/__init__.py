"""AG News topic classification for textlab: RNN / GRU / LSTM and a fastText-style bag of words.

Reads top to bottom: `data.py` (sources, cleaning, vocabulary, cached encodings, batches),
`model.py` (the models), `train.py` (training and evaluation as plain functions), `task.py`
(the hooks and the command-line verbs).
"""

__version__ = "0.1.0"
