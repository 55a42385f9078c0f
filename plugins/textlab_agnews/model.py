"""The models of the agnews task.

Every model of the task (also one a third party registers with `textlab_models`) is built by
`build(config, vocab)` and maps `(tokens [B, T] int64, right-padded with 0, lengths [B])` to
logits `[B, num_classes]`. The train verb fills the config dataclass from its options by field
name (`vocab_size`, `num_classes`, `emb_dim`, `hidden_dim`, `dropout`...), so a new model only
declares the fields it uses.

- `rnn`: embedding -> RNN / GRU / LSTM (`--rnn`, `--layers`, `--bidirectional`) -> pooling over
  the real tokens only (`max`, `mean` or `last` state; `--concat-last` adds the last state to
  max/mean) -> dropout -> linear. Rows of a batch that are shorter than the batch are packed, so
  padding never enters the recurrence, the pooling or the last state (the backward direction
  starts at each row's real last token). With `ngram_dim > 0` the linear layer also sees a bag
  of word and hashed n-gram embeddings (a "wide and deep" model).
- `bow`: fastText-style: the average of word embeddings and hashed bigram embeddings
  (`ngrams=2`; 3 adds trigrams) -> linear. Its dropout leaves words and n-grams out of the
  average while training. Sparse gradients: it trains with Adagrad (or SGD).
"""

from __future__ import annotations

from .config import NGRAM_HASHES, BowConfig, RNNConfig  # noqa: F401  (the configs live in config.py: no torch there)


def padding_mask(lengths, steps: int):
    """[B, T] True where a position holds a real token."""
    import torch

    return torch.arange(steps, device=lengths.device)[None, :] < lengths[:, None]


def word_table(rows: int, dim: int):
    """`nn.Embedding(rows, dim, padding_idx=0, sparse=True)` started as torch starts it (normal, the
    padding row zeroed; the same random numbers), except on the meta device, where torch's normal_
    would import torch._dynamo (2 s of every `train` that checks its model before it starts)."""
    import torch
    from torch import nn

    weight = torch.empty(rows, dim)
    if weight.device.type != "meta":
        nn.init.normal_(weight)
        weight[0].zero_()
    return nn.Embedding(rows, dim, padding_idx=0, sparse=True, _weight=weight)


def build_rnn(config: RNNConfig, vocab=None):
    import torch
    from torch import nn
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

    cells = {"rnn": nn.RNN, "gru": nn.GRU, "lstm": nn.LSTM}
    if config.rnn not in cells:
        import textlab

        raise textlab.UsageError(f"unknown --rnn {config.rnn!r}", hint="use rnn, gru or lstm")
    if config.aggregation not in ("max", "mean", "last"):
        import textlab

        raise textlab.UsageError(f"unknown --aggregation {config.aggregation!r}", hint="use max, mean or last")

    class RNNClassifier(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            c = config
            # sparse gradients: Adam then updates only the rows of the words in the batch (dense
            # Adam over the whole table took a quarter of each step; README, "Where the time goes")
            self.embedding = word_table(c.vocab_size, c.emb_dim)
            self.rnn = cells[c.rnn](c.emb_dim, c.hidden_dim, num_layers=c.layers, batch_first=True,
                                    bidirectional=c.bidirectional, dropout=c.dropout if c.layers > 1 else 0.0)
            width = c.hidden_dim * (2 if c.bidirectional else 1)
            self.dropout = nn.Dropout(c.dropout)
            both = c.concat_last and c.aggregation != "last"
            self.ngram = ngram_bag(c.vocab_size, c.ngram_dim, c.buckets, c.ngrams, c.dropout, c.ngram_hash) if c.ngram_dim else None
            self.out = nn.Linear(width * (2 if both else 1) + c.ngram_dim, c.num_classes)

        def forward(self, tokens, lengths):
            c = config
            x = self.dropout(self.embedding(tokens))
            lengths = lengths.to(tokens.device)
            padded = bool(lengths.min() < tokens.shape[1])
            if padded:  # pack: the recurrence never sees a pad, in either direction
                packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
                out, state = self.rnn(packed)
            else:  # every row is full length (most batches: they are bucketed by length)
                seq, state = self.rnn(x)
            if c.rnn == "lstm":
                state = state[0]
            dirs = 2 if c.bidirectional else 1
            # state: [layers * dirs, B, H]; the top layer's forward (and backward) final states
            last = torch.cat(list(state[-dirs:]), dim=1)
            feats = []
            if c.aggregation != "last":
                if padded:
                    seq, _ = pad_packed_sequence(out, batch_first=True, total_length=tokens.shape[1])
                mask = padding_mask(lengths, seq.shape[1])[:, :, None]
                if c.aggregation == "max":
                    feats.append(seq.masked_fill(~mask, float("-inf")).amax(dim=1))
                else:
                    feats.append((seq * mask).sum(dim=1) / lengths[:, None].clamp(min=1))
            if c.aggregation == "last" or c.concat_last:
                feats.append(last)
            feats = self.dropout(torch.cat(feats, dim=1))
            if self.ngram is not None:
                feats = torch.cat([feats, self.ngram(tokens, lengths)], dim=1)
            return self.out(feats)

    return RNNClassifier()


def _mix64(h):
    """splitmix64's finaliser on int64 tensors (multiplications wrap; shifts are made logical)."""
    for shift, mult in ((30, -4658895280553007687), (27, -7723592293110705685)):
        h = (h ^ ((h >> shift) & ((1 << (64 - shift)) - 1))) * mult
    return h ^ ((h >> 31) & ((1 << 33) - 1))


def _mix64_(h):
    """`_mix64` in place (the same numbers, no new tensor per operation: a whole split at once)."""
    import torch

    scratch = torch.empty_like(h)
    for shift, mult in ((30, -4658895280553007687), (27, -7723592293110705685)):
        torch.bitwise_right_shift(h, shift, out=scratch).bitwise_and_((1 << (64 - shift)) - 1)
        h.bitwise_xor_(scratch).mul_(mult)
    torch.bitwise_right_shift(h, 31, out=scratch).bitwise_and_((1 << 33) - 1)
    return h.bitwise_xor_(scratch)


def ngram_ids(tokens, lengths, vocab_size: int, buckets: int, ngrams: int, ngram_hash: str = "mix64"):
    """Word ids, then hashed bigram (and trigram) ids offset by `vocab_size`, and their mask.

    `mix64` chains the word ids through splitmix64's finaliser, so n-grams land in the buckets as
    if at random. `linear` is the hash of checkpoints written before it, kept so that they load and
    score as they did: `(a * 1_000_003 + b) * 2c mod buckets` is `(3a + b) * 2c` for 1M buckets,
    so millions of bigrams shared about 200k (even) buckets (README, "The n-gram hash").
    """
    import torch

    steps = tokens.shape[1]
    mask = padding_mask(lengths, steps)
    ids, masks = [tokens], [mask]
    h = tokens
    for n in range(2, ngrams + 1):
        if steps < n:
            break
        if ngram_hash == "linear":
            h = h[:, :-1] * 1_000_003 + tokens[:, n - 1:]
            ids.append(vocab_size + torch.remainder(h * (n * 2_654_435_761), buckets))
        else:
            h = _mix64(h[:, :-1] * -7046029254386353131 + tokens[:, n - 1:] + n)
            ids.append(vocab_size + torch.remainder(h, buckets))
        masks.append(mask[:, n - 1:])
    return torch.cat(ids, dim=1), torch.cat(masks, dim=1)


def bag_rows(ids, offsets, max_len: int, vocab_size: int, buckets: int, ngrams: int, ngram_hash: str = "mix64"):
    """Every row's bag, hashed once: its words (the first `max_len`), then its hashed bigrams (and
    trigrams), each row's in the order `ngram_ids` lists them. -> `Bags`.

    The rows come flat (`ids`, `offsets` [N+1], as `data.Encoded` keeps them), so a whole split is
    hashed at once: in CPU memory by `kernels.hash_bags` (mix64), else by whole-tensor operations
    (0.3 s for AG News's 71k train rows), where an n-gram that would cross into the next row is
    written to a spare last slot and dropped; a training step then only gathers its rows' bags.
    """
    import torch

    if ngram_hash == "mix64" and ids.device.type == "cpu":  # the same ids, in one compiled pass per row
        from .kernels import hash_bags

        flat, bag_offsets = hash_bags(ids.numpy(), offsets.numpy(), max_len, vocab_size, buckets, ngrams)
        return Bags(torch.from_numpy(flat), torch.from_numpy(bag_offsets))
    full = offsets[1:] - offsets[:-1]
    lengths = full.clamp(max=max_len)
    ends = torch.cumsum(lengths, 0)
    starts, n_tok = ends - lengths, int(ends[-1]) if len(lengths) else 0
    sizes = lengths.clone()
    for n in range(2, ngrams + 1):
        sizes += (lengths - (n - 1)).clamp_(min=0)
    bag_offsets = torch.zeros(len(lengths) + 1, dtype=torch.int64)
    torch.cumsum(sizes, 0, out=bag_offsets[1:])
    total = int(bag_offsets[-1])
    per_token = lambda x: torch.repeat_interleave(x, lengths, output_size=n_tok)  # noqa: E731
    tok = ids.long() if bool((full <= max_len).all()) else ids[per_token(offsets[:-1] - starts).add_(torch.arange(n_tok))].long()
    at = per_token(bag_offsets[:-1] - starts).add_(torch.arange(n_tok))  # where each word goes
    out = torch.empty(total + 1, dtype=torch.int64)
    out[at] = tok
    row_end, row_len = per_token(ends), per_token(lengths)
    part, h = row_len.clone(), tok  # part: where an n-gram goes after its row's words (and shorter n-grams)
    for n in range(2, ngrams + 1):
        k = n_tok - (n - 1)
        if k <= 0:
            break
        if ngram_hash == "linear":
            h = h[:-1] * 1_000_003 + tok[n - 1:]
            hashed = torch.remainder(h * (n * 2_654_435_761), buckets).add_(vocab_size)
        else:
            h = _mix64_((h[:-1] * -7046029254386353131).add_(tok[n - 1:]).add_(n))
            hashed = torch.remainder(h, buckets).add_(vocab_size)
        dest = (at[:k] + part[:k]).masked_fill_(torch.arange(n - 1, n_tok) >= row_end[:k], total)
        out[dest] = hashed
        part = part[:k] + (row_len[:k] - (n - 1)).clamp_(min=0)
    return Bags(out[:total], bag_offsets)


class Bags:
    """Rows as bags of ids, flat: row i is `ids[offsets[i]:offsets[i + 1]]`."""

    def __init__(self, ids, offsets) -> None:
        self.ids, self.offsets = ids, offsets

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def take(self, rows) -> tuple:
        """The bags of `rows` -> (ids, starts [B]): the input of `nn.EmbeddingBag`."""
        import torch

        if self.ids.device.type == "cpu":  # one compiled pass
            from .kernels import take_bags

            ids, starts = take_bags(self.ids.numpy(), self.offsets.numpy(), rows.numpy())
            return torch.from_numpy(ids), torch.from_numpy(starts)
        first = self.offsets[rows]
        sizes = self.offsets[rows + 1] - first
        starts = torch.cumsum(sizes, 0) - sizes
        shift = torch.repeat_interleave(first - starts, sizes, output_size=int(starts[-1] + sizes[-1]) if len(rows) else 0)
        return self.ids[torch.arange(len(shift)) + shift], starts


def ngram_bag(vocab_size: int, dim: int, buckets: int, ngrams: int, dropout: float, ngram_hash: str = "mix64"):
    """The average of word and hashed n-gram embeddings: `(tokens, lengths) -> [B, dim]`, or from
    bags hashed beforehand (`bags=(ids, starts)`, see `bag_rows`; the same average).

    While training, `dropout` leaves a share of the words and n-grams out of each average (every
    text keeps its first word). The table is large and each text touches a few rows of it, so its
    gradients are sparse.
    """
    import torch
    from torch import nn

    if ngram_hash not in NGRAM_HASHES:
        import textlab

        raise textlab.UsageError(f"unknown ngram_hash {ngram_hash!r}", hint="use " + " or ".join(NGRAM_HASHES))

    class NgramBag(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            rows = vocab_size + (buckets if ngrams > 1 else 0)
            # given its weight, the bag skips torch's normal_ start (overwritten here anyway; on the meta
            # device normal_ imports torch._dynamo: 2 s of every `train --model bow`)
            self.bag = nn.EmbeddingBag(rows, dim, mode="mean", sparse=True, _weight=torch.empty(rows, dim))
            nn.init.uniform_(self.bag.weight, -1.0 / dim, 1.0 / dim)

        @property
        def weight(self):
            return self.bag.weight

        def bags(self, ids, offsets, max_len: int) -> Bags:
            return bag_rows(ids, offsets, max_len, vocab_size, buckets, ngrams, ngram_hash)

        def forward(self, tokens=None, lengths=None, bags=None):
            if bags is not None:
                return self._from_bags(*bags)
            ids, mask = ngram_ids(tokens, lengths.to(tokens.device), vocab_size, buckets, ngrams, ngram_hash)
            if self.training and dropout > 0:
                keep = torch.rand(mask.shape, device=mask.device) >= dropout
                keep[:, 0] = True
                mask = mask & keep
            counts = mask.sum(dim=1)
            return self.bag(ids[mask], torch.cumsum(counts, dim=0) - counts)

        def _from_bags(self, ids, starts):
            if self.training and dropout > 0:
                u = torch.rand(ids.shape, device=ids.device)
                if ids.device.type == "cpu":  # the same, in one compiled pass
                    from .kernels import drop_words

                    ids, starts = (torch.from_numpy(x) for x in drop_words(ids.numpy(), starts.numpy(), u.numpy(),
                                                                           dropout))
                else:
                    keep = u >= dropout
                    keep[starts] = True
                    starts = torch.cumsum(keep, 0)[starts] - 1  # kept ids before each bag's first
                    ids = ids[keep]
            return self.bag(ids, starts)

    return NgramBag()


def build_bow(config: BowConfig, vocab=None):
    from torch import nn

    class BagOfNgrams(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            c = config
            self.embedding = ngram_bag(c.vocab_size, c.emb_dim, c.buckets, c.ngrams, c.dropout, c.ngram_hash)
            self.out = nn.Linear(c.emb_dim, c.num_classes)

        def bags(self, ids, offsets, max_len: int) -> Bags:
            """Rows hashed once into bags (`bag_rows`): `net(bags=bags.take(rows))` then reads them."""
            return self.embedding.bags(ids, offsets, max_len)

        def forward(self, tokens=None, lengths=None, bags=None):
            return self.out(self.embedding(tokens, lengths, bags=bags))

    return BagOfNgrams()
