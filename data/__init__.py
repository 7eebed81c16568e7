"""Text data without Lightning: corpora, tokenizers, cached token files, fixed-length blocks and their split.

- `TextCorpus`: which files, cut into which documents (data/corpus.py); the embedded Shakespeare by default.
- `Tokenizer`, `GPT2Tokenizer`, `CharTokenizer`, `tokenizer_from_name` (data/tokenizers.py): offline GPT-2 BPE.
- token files (data/tokens.py): a corpus tokenised once into a uint16 array on disk, read through np.memmap.
- `TokenBlocks`, `split_blocks` (data/blocks.py): blocks of seq_len tokens and the seeded train/validation split.
- `TextBlocks` (data/text_blocks.py): all of the above from the arguments of the training data module.
- labels (data/labels.py, data/shakespeare_works.py): a class per document (the embedded works by genre or work, a
  user's corpus by directory or mapping file) carried to the blocks; `LabelledBlocks` yields (tokens, label).
- `unigram_log_probs` (data/unigram.py): the unigram model of the training blocks.

The Lightning data module of `lightning fit` is training.datamodule.TextDataModule, built on `TextBlocks`.
"""

from data.blocks import BlockSplit, LabelledBlocks, TokenBlocks, split_blocks, validation_block_count
from data.corpus import TextCorpus, default_corpus_documents, default_corpus_path
from data.text_blocks import TextBlocks
from data.tokenizers import END_OF_TEXT, CharTokenizer, GPT2Tokenizer, Tokenizer, tokenizer_from_name
from data.unigram import unigram_entropy_of, unigram_log_probs

__all__ = [
    "END_OF_TEXT",
    "BlockSplit",
    "CharTokenizer",
    "GPT2Tokenizer",
    "LabelledBlocks",
    "TextBlocks",
    "TextCorpus",
    "TokenBlocks",
    "Tokenizer",
    "default_corpus_documents",
    "default_corpus_path",
    "split_blocks",
    "tokenizer_from_name",
    "unigram_entropy_of",
    "unigram_log_probs",
    "validation_block_count",
]
