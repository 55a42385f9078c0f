"""AG News topic classification for textlab: RNN / GRU / LSTM and a fastText-style bag of words.

Reads top to bottom: `config.py` (model configs and the verbs' options), `data.py` (sources,
cleaning, tokenizers, vocabulary, cached encodings, batches), `model.py` (the models),
`embeddings.py` (word2vec files and `--pretrain`), `train.py` (resolve and training on the core
engine), `evaluate.py` (scoring a checkpoint), `upgrade.py` (runs of textlab 0.1.0), `task.py`
(the command-line verbs and the hooks).
"""

__version__ = "0.2.0"
