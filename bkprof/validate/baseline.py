"""Count-based baselines on the same test words: unigram, bigram, and the two-sided bigram.

Counts come from the training text. Smoothing, stated in every report:

- unigram: add-one, u(w) = (c(w) + 1) / (T + V) over the V predictable words;
- bigram: interpolated with the unigram, p(w | l) = lam * c(l, w) / c(l) + (1 - lam) * u(w);
- two-sided (the count model of the masked task, which sees the word on each side):
  p(w | l, r) = p(w | l) * p(r | w) / sum_v p(v | l) * p(r | v), both factors the bigram above
  (exact for a first-order Markov chain).

lam is chosen from a grid by perplexity on the last tenth of the training text with counts from
the first nine tenths, then the counts are taken from the whole training text. Words at the two
ends of the test text see <eos> beyond them (the text begins and ends with a line end).
"""

from __future__ import annotations

import math

import torch

LAMBDAS = tuple(round(0.05 + 0.1 * i, 2) for i in range(10))  # 0.05, 0.15, ..., 0.95
HELD_OUT_FRACTION = 0.1
_CHUNK = 256  # left contexts per block of the two-sided normaliser (a block is CHUNK x V floats)


class BigramCounts:
    def __init__(self, stream: torch.Tensor, vocab_size: int):
        v = vocab_size
        self.v = v
        unigram = torch.bincount(stream, minlength=v).double()
        self.unigram = (unigram + 1) / (unigram.sum() + v)
        pairs = stream[:-1] * v + stream[1:]
        keys, counts = torch.unique(pairs, return_counts=True)
        rows, cols = keys // v, keys % v
        out = torch.bincount(rows, weights=counts.double(), minlength=v)
        self.rows, self.cols = rows, cols
        self.probs = counts.double() / out[rows]            # c(l, w) / c(l), one per seen pair
        self.has_successor = (out > 0).double()
        self.matrix = torch.sparse_coo_tensor(torch.stack([rows, cols]), self.probs, (v, v),
                                              check_invariants=True).coalesce()

    def conditional(self, left: torch.Tensor, word: torch.Tensor) -> torch.Tensor:
        """c(l, w) / c(l) for each pair (0 when unseen)."""
        keys = self.rows * self.v + self.cols
        wanted = left * self.v + word
        at = torch.searchsorted(keys, wanted).clamp(max=len(keys) - 1)
        return torch.where(keys[at] == wanted, self.probs[at], torch.zeros((), dtype=torch.float64))

    def bigram(self, left, word, lam: float) -> torch.Tensor:
        seen = lam * self.has_successor[left]
        return seen * self.conditional(left, word) + (1 - seen) * self.unigram[word]

    def two_step(self, left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
        """(A H A)[l, r] for each (l, r): A the bigram matrix c(l, w) / c(l), H = diag(has_successor)."""
        out = torch.zeros(len(left), dtype=torch.float64)
        local = torch.full((self.v,), -1, dtype=torch.long)
        transposed = self.matrix.t().coalesce()
        weights = self.probs * self.has_successor[self.cols]
        unique_left = torch.unique(left)
        for first in range(0, len(unique_left), _CHUNK):
            chunk = unique_left[first:first + _CHUNK]
            local[chunk] = torch.arange(len(chunk))
            pick = local[self.rows] >= 0
            block = torch.zeros(len(chunk), self.v, dtype=torch.float64)
            block[local[self.rows[pick]], self.cols[pick]] = weights[pick]
            product = torch.sparse.mm(transposed, block.t()).t()   # row i: (A H A)[chunk[i], :]
            here = local[left] >= 0
            out[here] = product[local[left[here]], right[here]]
            local[chunk] = -1
        return out

    def two_sided(self, left, word, right, lam: float, two_step: torch.Tensor | None = None) -> torch.Tensor:
        """p(w | l) p(r | w) / Z(l, r), Z(l, r) = sum_v p(v | l) p(r | v), term by term:

        with a_y = lam * has_successor(y), p(x | y) = a_y A[y, x] + (1 - a_y) u(x), so
        Z = a_l (A H A)[l, r] lam + a_l u(r) (rowsum_l - lam (A h)[l])
            + (1 - a_l) lam ((u h)^T A)[r] + (1 - a_l) u(r) (1 - lam u.h).
        """
        if two_step is None:
            two_step = self.two_step(left, right)
        h = self.has_successor
        a_l, u_r = lam * h[left], self.unigram[right]
        a_h = torch.sparse.mm(self.matrix, h[:, None]).squeeze(1)                      # (A h)[l]
        u_h_a = torch.sparse.mm(self.matrix.t(), (self.unigram * h)[:, None]).squeeze(1)  # ((u h)^T A)[r]
        z = (a_l * lam * two_step
             + a_l * u_r * (h[left] - lam * a_h[left])
             + (1 - a_l) * lam * u_h_a[right]
             + (1 - a_l) * u_r * (1 - lam * float((self.unigram * h).sum())))
        return self.bigram(left, word, lam) * self.bigram(word, right, lam) / z


def _contexts(stream: torch.Tensor, eos: int) -> tuple[torch.Tensor, torch.Tensor]:
    edge = torch.tensor([eos])
    return torch.cat([edge, stream[:-1]]), torch.cat([stream[1:], edge])


def _perplexity(probs: torch.Tensor) -> float:
    return math.exp(-float(probs.log().mean()))


def _best_lambda(score) -> float:
    return min(LAMBDAS, key=score)


def baselines(train: torch.Tensor, test: torch.Tensor, vocab_size: int, eos: int) -> dict:
    """Test perplexity of the three count models, with the lam each was given."""
    split = int(len(train) * (1 - HELD_OUT_FRACTION))
    fit, held = BigramCounts(train[:split], vocab_size), train[split:]
    held_left, held_right = _contexts(held, eos)
    held_two_step = fit.two_step(held_left, held_right)
    lam_bigram = _best_lambda(lambda lam: _perplexity(fit.bigram(held_left, held, lam)))
    lam_two = _best_lambda(lambda lam: _perplexity(fit.two_sided(held_left, held, held_right, lam, held_two_step)))
    counts = BigramCounts(train, vocab_size)
    left, right = _contexts(test, eos)
    return {
        "unigram": {"test_ppl": _perplexity(counts.unigram[test]), "smoothing": "add-one"},
        "bigram": {"test_ppl": _perplexity(counts.bigram(left, test, lam_bigram)), "lambda": lam_bigram,
                   "smoothing": "interpolated with the add-one unigram"},
        "two_sided": {"test_ppl": _perplexity(counts.two_sided(left, test, right, lam_two)), "lambda": lam_two,
                      "smoothing": "p(w|l) p(r|w) normalised over w, both interpolated bigrams"},
        "test_words": int(len(test)),
        "note": "counts from the training text; lambda chosen on its last tenth with counts from the rest",
    }
