"""Data for training: text, tokenizers, batches and labelled tasks.

The pipeline a training script runs, top to bottom::

    text = load_corpus()                          # str: the embedded corpus, no download
    tok = CharTokenizer.from_text(text)           # or SubwordTokenizer.train(text, 512)
    ids = encode_corpus(tok, text)                # np.ndarray, int64, shape (N,)
    train_ids, val_ids = train_val_split(ids)     # first 90% / last 10%, contiguous
    x, y = get_batch(train_ids, batch_size=32, block_size=128)   # Tensors, (32, 128) int64

``corpus.py`` holds the text, ``tokenizers.py`` the char and subword (BPE, WordPiece)
tokenizers, ``pretrained_tokenizers.py`` Hugging Face GPT-2 / BERT tokenizer
directories, ``batches.py`` LM and masked-LM batches, ``tasks.py`` labelled data for
classification.  Only ``SubwordTokenizer`` and ``PretrainedTokenizer`` need Hugging Face
``tokenizers``, imported lazily.
"""
from .batches import (IGNORE_INDEX, MASK_FRACTION, RANDOM_FRACTION, encode_batch, get_batch,
                      get_mlm_batch, mask_tokens, padding_id, train_val_split,
                      unigram_baseline_loss)
from .corpus import (DOWNLOAD_TIMEOUT_S, SHAKESPEARE_SHA256, SHAKESPEARE_URL,
                     STDLIB_EXCLUDED_DIRS, STDLIB_MAX_CHARS, default_cache_dir, encode_corpus,
                     load_corpus)
from .pretrained_tokenizers import PretrainedTokenizer
from .seq2seq import (SOURCE_MAX_CHARS, TARGET_MAX_WORDS, TARGET_MIN_WORDS, Seq2SeqData,
                      function_name_baseline, load_pairs_file, pairs_from_file,
                      split_identifiers, split_pairs, stdlib_docstring_dataset)
from .tasks import (DEFAULT_PACKAGES, FUNCTION_MAX_CHARS, FUNCTION_MIN_LINES, SPLIT_FRACTIONS,
                    LabelledData, classification_batches, encode_labelled,
                    label_budget_subsets, labelled_batch, labelled_from_file,
                    load_labelled_file, stdlib_function_dataset)
from .tokenizers import (BERT_SPECIAL_TOKENS, CLS_TOKEN, MASK_TOKEN, PAD_TOKEN, SEP_TOKEN,
                         SUBWORD_MODELS, UNK_TOKEN, CharTokenizer, SubwordTokenizer,
                         load_tokenizer)
