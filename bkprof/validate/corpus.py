"""The WikiText corpus: which files to read, the word vocabulary, and the token streams.

bkprof ships the validation and test splits of WikiText-2 (`bkprof/data/wikitext-2/`): the models
train on the validation text and are evaluated on the test text. A full copy of WikiText has a
training split too; `--corpus DIR` reads either layout.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

UNK = "<unk>"
EOS = "<eos>"    # closes every line, as the usual WikiText language-model setup does
MASK = "<mask>"  # the input token of a position whose word is to be predicted (masked objective)

# (train, test) file names in the order they are tried; the first layout found in the folder wins
LAYOUTS = (
    ("wiki.train.tokens", "wiki.test.tokens"),
    ("train.txt", "test.txt"),
    ("valid.txt", "test.txt"),
)


@dataclass(frozen=True)
class CorpusFiles:
    train: Path
    test: Path

    def describe(self) -> str:
        bundled = self.train.parent == bundled_folder()
        where = "the copy bundled with bkprof, bkprof/data/wikitext-2" if bundled else str(self.train.parent)
        return f"trained on {self.train.name}, evaluated on {self.test.name} ({where})"


def bundled_folder() -> Path:
    """The WikiText-2 validation and test splits that ship with bkprof (CC BY-SA 3.0, see their README)."""
    return Path(__file__).resolve().parent.parent / "data" / "wikitext-2"


def corpus_files(folder: str | Path | None = None) -> CorpusFiles:
    """The training and test files of a WikiText folder; ValueError naming the folder when it has neither layout."""
    folder = Path(folder) if folder is not None else bundled_folder()
    if not folder.is_dir():
        raise ValueError(f"--corpus {folder}: not a folder")
    for train, test in LAYOUTS:
        if (folder / train).is_file() and (folder / test).is_file():
            return CorpusFiles(folder / train, folder / test)
    wanted = "; ".join(f"{a} + {b}" for a, b in LAYOUTS)
    raise ValueError(f"--corpus {folder}: no WikiText layout found (wanted {wanted})")


def words(text: str) -> list[str]:
    """Whitespace-separated words of every line, each line closed by <eos> (blank lines give <eos> alone)."""
    out: list[str] = []
    for line in text.splitlines():
        out += line.split()
        out.append(EOS)
    return out


@dataclass(frozen=True)
class Vocabulary:
    """Words of the training text, most frequent first (ties alphabetical); <unk> stands for any other word.

    <mask> is the last id: an input symbol only, never a word to predict.
    """

    itos: tuple[str, ...]

    @classmethod
    def from_words(cls, training_words: list[str]) -> "Vocabulary":
        counts = Counter(training_words)
        counts.setdefault(UNK, 0)
        counts.pop(MASK, None)
        ordered = sorted(counts, key=lambda w: (-counts[w], w))
        return cls(tuple(ordered) + (MASK,))

    @property
    def size(self) -> int:
        return len(self.itos)

    @property
    def predictable(self) -> int:
        """Ids 0..predictable-1 are words a model predicts (everything but <mask>)."""
        return len(self.itos) - 1

    @property
    def mask_id(self) -> int:
        return len(self.itos) - 1

    def ids(self, text_words: list[str]) -> list[int]:
        index = {w: i for i, w in enumerate(self.itos[:-1])}
        unk = index[UNK]
        return [index.get(w, unk) for w in text_words]

    def encode(self, text_words: list[str]):
        import torch

        return torch.tensor(self.ids(text_words), dtype=torch.long)


@dataclass(frozen=True)
class Corpus:
    files: CorpusFiles
    vocab: Vocabulary
    train: "object"   # LongTensor of token ids (a list of ids when loaded without torch)
    test: "object"
    fingerprint: str  # sha256 of both files' bytes: runs on different text never mix on --resume
    test_whole: int | None = None  # the whole test text's tokens, where --test-tokens kept fewer

    def describe(self) -> dict:
        return {"folder": str(self.files.train.parent), "train_file": self.files.train.name,
                "test_file": self.files.test.name, "train_tokens": int(len(self.train)),
                "test_tokens": int(len(self.test)), "vocabulary": self.vocab.size, "sha256": self.fingerprint,
                "note": f"{self.files.describe()}; words outside the training text's vocabulary read as {UNK}, "
                        f"every line ends with {EOS}"}


MIN_TRAIN_WORDS, MIN_TEST_WORDS = 100, 2  # below these the baselines and the scoring have nothing to work on


def load_corpus(folder: str | Path | None = None, tensors: bool = True) -> Corpus:
    """The corpus; `tensors=False` keeps the token ids as lists (no torch: what a report needs)."""
    files = corpus_files(folder)
    digest = hashlib.sha256()
    texts = []
    for path in (files.train, files.test):
        data = path.read_bytes()
        digest.update(data)
        try:
            texts.append(data.decode("utf-8"))
        except UnicodeDecodeError as error:
            raise ValueError(f"--corpus: {path} is not UTF-8 text (byte {error.start}: {error.reason})") from None
    train_words, test_words = words(texts[0]), words(texts[1])
    for path, found, least in ((files.train, train_words, MIN_TRAIN_WORDS), (files.test, test_words, MIN_TEST_WORDS)):
        if len(found) < least:  # the count baselines hold out part of the text; a model needs sequences
            raise ValueError(f"--corpus: {path} has {len(found)} words (line ends included); at least {least} are needed")
    vocab = Vocabulary.from_words(train_words)
    encode = vocab.encode if tensors else vocab.ids
    return Corpus(files, vocab, encode(train_words), encode(test_words), digest.hexdigest())
