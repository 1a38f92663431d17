"""Evaluation numbers: language-model loss views, classification scores, corpus BLEU and chrF.

Language models
---------------
A language model's loss is the mean negative log-likelihood (NLL) per token, in nats.  Three
friendlier views of the same number:

* perplexity = exp(loss): the model is as unsure as a uniform choice among that many tokens;
* bits per token = loss / ln 2: the code length an entropy coder driven by the model would need;
* bits per character = loss / ln 2 * tokens / characters: comparable across tokenizers,
  because it is measured per character of text rather than per token.

Over a whole evaluation set the right "loss" is the *token-weighted* mean: sum every token's
NLL, divide by the number of tokens.  Averaging per-batch means instead over-weights short
batches (the last, ragged one; padded ones whose pads are ignored), so ``perplexity`` and
``bits_per_token`` also take ``total_nll=`` and ``n_tokens=`` (per-batch sums and counts)::

    perplexity(2.3)                                        # from a mean loss
    perplexity(total_nll=[52.1, 48.7], n_tokens=[20, 19])  # exp(100.8 / 39), corpus level

Classification
--------------
``accuracy``, ``precision_recall_f1``, ``f1_score`` and ``confusion_matrix`` follow
scikit-learn's definitions and conventions, so numbers can be compared with papers and other
code.  Labels may be ints, bools or strings; inputs may be lists, NumPy arrays or tensors
(anything with a ``.numpy()`` method).

Translation / generation
------------------------
``bleu`` is corpus BLEU exactly as sacreBLEU computes it with its defaults (mteval-v13a
tokenisation, 4-grams, "exp" smoothing), so the score is comparable with published ones.
``chrf`` is sacreBLEU's corpus chrF (character n-gram F-score; ``word_order=2`` gives chrF++),
which needs no tokenizer and gives partial credit for a word with the right stem but the
wrong ending.  ``exact_match`` is the fraction of outputs equal to a reference.  All three
take ``references[i]``: the reference(s) of hypothesis i, a list or one bare string.
"""
from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

# --- language-model loss ----------------------------------------------------------------


def _array(x, dtype=None) -> np.ndarray:
    """A NumPy array from a number, a list, an array or a tensor (anything with .numpy())."""
    return np.asarray(x.numpy() if hasattr(x, "numpy") else x, dtype=dtype)


def _scalar(x, name: str) -> float:
    a = _array(x, np.float64)
    if a.size != 1:
        raise ValueError(f"{name} must be a single number, got an array of shape {a.shape}")
    return float(a.reshape(()))


def mean_nll(total_nll, n_tokens) -> float:
    """Token-weighted mean negative log-likelihood: sum(total_nll) / sum(n_tokens).  Two
    numbers (NLL summed over a set, in nats, and its token count) or two equal-length
    sequences of per-batch sums (mean loss times token count) and counts."""
    sums, counts = (np.atleast_1d(_array(x, np.float64)) for x in (total_nll, n_tokens))
    if sums.ndim != 1 or counts.ndim != 1:
        raise ValueError(f"mean_nll: total_nll and n_tokens must be numbers or 1-D sequences, "
                         f"got shapes {sums.shape} and {counts.shape}")
    if len(sums) != len(counts):
        raise ValueError(f"mean_nll: total_nll has {len(sums)} entries but n_tokens has "
                         f"{len(counts)}")
    if np.any(counts < 0) or not counts.sum() > 0:
        raise ValueError(f"mean_nll: token counts must be non-negative with a positive total, "
                         f"got {counts.tolist()}")
    return float(sums.sum() / counts.sum())


def _resolve_loss(fn: str, loss, total_nll, n_tokens) -> float:
    """The mean NLL per token, from either ``loss`` or ``total_nll`` + ``n_tokens``."""
    if loss is not None and (total_nll is not None or n_tokens is not None):
        raise TypeError(f"{fn}: pass either loss or total_nll= and n_tokens=, not both")
    if loss is not None:
        return _scalar(loss, "loss")
    if total_nll is None or n_tokens is None:
        raise TypeError(f"{fn}: pass a mean loss, or both total_nll= and n_tokens=")
    return mean_nll(total_nll, n_tokens)


def perplexity(loss=None, *, total_nll=None, n_tokens=None) -> float:
    """exp(mean NLL per token in nats), ``inf`` instead of an OverflowError for huge losses.
    From a mean ``loss`` or corpus-level ``total_nll=`` and ``n_tokens=`` (see ``mean_nll``).
    A NaN loss gives NaN, so a diverged run does not masquerade as merely "very bad"."""
    nll = _resolve_loss("perplexity", loss, total_nll, n_tokens)
    try:
        return math.exp(nll)
    except OverflowError:          # exp(> ~709.78) does not fit in a float64
        return math.inf


def bits_per_token(loss=None, *, total_nll=None, n_tokens=None) -> float:
    """Mean NLL per token converted from nats to bits (divide by ln 2).  Takes the same
    arguments as ``perplexity``; perplexity == 2 ** bits_per_token."""
    return _resolve_loss("bits_per_token", loss, total_nll, n_tokens) / math.log(2)


def bits_per_char(loss: float, n_tokens: int = 1, n_chars: int = 1) -> float:
    """Mean NLL per token (nats) -> bits per character of the text those tokens encode.
    For a character tokenizer n_tokens == n_chars and this is just loss / ln 2."""
    if n_tokens <= 0 or n_chars <= 0:
        raise ValueError(f"bits_per_char: need positive token and character counts, got "
                         f"{n_tokens} tokens and {n_chars} characters")
    return loss / math.log(2) * n_tokens / n_chars


# --- classification ---------------------------------------------------------------------

_AVERAGES = ("binary", "micro", "macro", "weighted", None)


def _labels_1d(y, name: str) -> np.ndarray:
    """A 1-D array of class labels from a list, an array or a tensor, with the checks that
    catch the usual mistakes: logits instead of argmax-ed predictions, probabilities instead
    of classes, NaNs."""
    a = _array(y)
    if a.ndim != 1:
        raise ValueError(f"{name} must be a 1-D sequence of class labels, got shape {a.shape}"
                         f" (take argmax over the class axis of scores first)")
    if a.dtype.kind == "f":
        if np.isnan(a).any():
            raise ValueError(f"{name} contains NaN")
        if np.any(a != np.round(a)):
            raise ValueError(f"{name} holds non-integer numbers; class labels must be discrete "
                             f"(threshold or argmax probabilities first)")
    return a


def _check_pair(y_true, y_pred) -> tuple[np.ndarray, np.ndarray]:
    t, p = _labels_1d(y_true, "y_true"), _labels_1d(y_pred, "y_pred")
    if len(t) != len(p):
        raise ValueError(f"y_true has {len(t)} samples but y_pred has {len(p)}")
    if len(t) == 0:
        raise ValueError("y_true and y_pred are empty: need at least one sample")
    _same_kind(t, p, "y_true and y_pred mix string and numeric labels")
    return t, p


def _same_kind(a: np.ndarray, b: np.ndarray, what: str):
    # NumPy would silently turn [1, 0] vs ["1", "0"] into strings and call them equal.
    if (a.dtype.kind in "US") != (b.dtype.kind in "US"):
        raise ValueError(f"{what} ({a.dtype} vs {b.dtype})")


def _check_labels(labels, t: np.ndarray) -> np.ndarray:
    lab = _labels_1d(labels, "labels")
    if len(lab) == 0:
        raise ValueError("labels must contain at least one label")
    _same_kind(lab, t, "labels mix string and numeric labels with y_true")
    if len(np.unique(lab)) != len(lab):
        raise ValueError(f"labels contains duplicates: {lab.tolist()}")
    return lab


def _index_of(values: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each value, its position in ``labels`` (any order) and whether it is there at all.
    Vectorised lookup: binary search in the sorted labels, then map back to the given order."""
    order = np.argsort(labels, kind="stable")
    ranked = labels[order]
    pos = np.clip(np.searchsorted(ranked, values), 0, len(labels) - 1)
    return order[pos], ranked[pos] == values


def accuracy(y_true, y_pred) -> float:
    """Fraction of samples whose predicted label equals the true one, in [0, 1]."""
    t, p = _check_pair(y_true, y_pred)
    return float(np.mean(t == p))


def confusion_matrix(y_true, y_pred, labels=None) -> np.ndarray:
    """``cm[i, j]`` = number of samples whose true label is ``labels[i]`` and predicted label
    is ``labels[j]`` (rows: truth, columns: prediction), as ``int64``.  ``labels`` (default:
    the sorted union of both inputs) fixes the order; samples with a label not in it are left
    out, and at least one of them must occur in ``y_true`` (as in scikit-learn)."""
    t, p = _check_pair(y_true, y_pred)
    if labels is None:
        lab = np.union1d(t, p)
    else:
        lab = _check_labels(labels, t)
        if not np.isin(lab, t).any():
            raise ValueError(f"none of labels {lab.tolist()} occurs in y_true")
    k = len(lab)
    ti, t_known = _index_of(t, lab)
    pi, p_known = _index_of(p, lab)
    keep = t_known & p_known
    # Each (true, predicted) pair is one cell i * k + j of the flattened matrix.
    return np.bincount(ti[keep] * k + pi[keep], minlength=k * k).reshape(k, k).astype(np.int64)


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den elementwise, 0.0 where den == 0 (scikit-learn's zero_division=0)."""
    num, den = np.asarray(num, dtype=np.float64), np.asarray(den, dtype=np.float64)
    return np.divide(num, den, out=np.zeros_like(num), where=den != 0)


def _class_counts(t: np.ndarray, p: np.ndarray, lab: np.ndarray):
    """Per class in ``lab``: true positives, how many samples truly are the class (support)
    and how many are predicted as it.  That is all P/R/F1 need: FP = predicted - TP and
    FN = support - TP.  Read off the confusion matrix over every label in sight (a class in
    ``lab`` seen nowhere scores 0s): the diagonal, the row sums and the column sums."""
    universe = np.union1d(np.union1d(t, p), lab)
    cm = confusion_matrix(t, p, universe)
    idx, _ = _index_of(lab, universe)
    return np.diag(cm)[idx], cm.sum(axis=1)[idx], cm.sum(axis=0)[idx]


def precision_recall_f1(y_true, y_pred, average: str | None = "binary", pos_label=1,
                        labels=None):
    """Precision, recall and F1 with scikit-learn's semantics (``zero_division=0``).

    For a class c: precision = TP / (TP + FP) (of the samples predicted c, how many are c),
    recall = TP / (TP + FN) (of the samples that are c, how many were found), and
    F1 = 2 TP / (2 TP + FP + FN), their harmonic mean.  Any ratio with a zero denominator is 0.

    ``average``:

    * ``"binary"`` (default): class ``pos_label`` only; y_true and y_pred hold at most two
      distinct labels, ``pos_label`` among them unless only one occurs.  ``labels`` ignored.
    * ``"macro"``: unweighted mean of the per-class scores (rare classes count as much as
      common ones), over ``labels``, else the union of labels in y_true and y_pred.
    * ``"micro"``: TP, FP and FN summed over the classes first; with every class included,
      each error is one FP and one FN, so micro P == R == F1 == accuracy.
    * ``"weighted"``: mean of the per-class scores weighted by support (count in y_true).
    * ``None``: per-class arrays, in the order of ``labels`` (else the sorted union).

    Returns ``(precision, recall, f1)``: floats, or three arrays when ``average`` is None.
    """
    if average not in _AVERAGES:
        raise ValueError(f"average must be one of {list(_AVERAGES)}, got {average!r}")
    t, p = _check_pair(y_true, y_pred)
    present = np.union1d(t, p)
    if average == "binary":
        if len(present) > 2:
            raise ValueError(f"average='binary' needs at most 2 distinct labels, but y_true and "
                             f"y_pred hold {len(present)}: {present.tolist()}; choose one of "
                             f"average='macro', 'micro', 'weighted' or None")
        if pos_label in present.tolist():
            i = present.tolist().index(pos_label)
            lab = present[i:i + 1]          # pos_label as stored (dtype of the data)
        elif len(present) == 2:
            raise ValueError(f"pos_label={pos_label!r} is not a valid label: it should be one of "
                             f"{present.tolist()}")
        else:                   # one label only, not pos_label: no positives anywhere, all 0
            return 0.0, 0.0, 0.0
    elif labels is None:
        lab = present
    else:
        lab = _check_labels(labels, t)
    tp, true_sum, pred_sum = _class_counts(t, p, lab)

    if average == "micro":
        tp, true_sum, pred_sum = tp.sum(), true_sum.sum(), pred_sum.sum()
    precision = _ratio(tp, pred_sum)
    recall = _ratio(tp, true_sum)
    f1 = _ratio(2 * tp, true_sum + pred_sum)
    if average is None:
        return precision, recall, f1
    if average == "weighted":
        if true_sum.sum() == 0:
            return 0.0, 0.0, 0.0
        return tuple(float(np.average(s, weights=true_sum)) for s in (precision, recall, f1))
    # binary (one class), micro (pooled scalars) and macro (plain mean) all end in a mean.
    return float(np.mean(precision)), float(np.mean(recall)), float(np.mean(f1))


def f1_score(y_true, y_pred, average: str | None = "binary", pos_label=1, labels=None):
    """F1 alone; see ``precision_recall_f1`` for the arguments and conventions."""
    return precision_recall_f1(y_true, y_pred, average=average, pos_label=pos_label,
                               labels=labels)[2]


def format_confusion_matrix(cm, label_names=None) -> str:
    """A confusion matrix as an aligned text table (rows: truth, columns: prediction, so the
    diagonal is the correct predictions; ``label_names`` default to 0..k-1), no final newline::

        true\\pred  cat  dog
        cat          5    1
        dog          0    3
    """
    m = _array(cm)
    if m.ndim != 2 or m.shape[0] != m.shape[1]:
        raise ValueError(f"confusion matrix must be square, got shape {m.shape}")
    names = [str(n) for n in (range(len(m)) if label_names is None else label_names)]
    if len(names) != len(m):
        raise ValueError(f"{len(names)} label names for a {len(m)}x{len(m)} confusion matrix")
    cells = [[f"{v:g}" if m.dtype.kind == "f" else str(v) for v in row] for row in m.tolist()]
    rows = [("true\\pred", names)] + list(zip(names, cells))
    head_w = max(len(head) for head, _ in rows)
    col_w = [max(len(row[j]) for _, row in rows) for j in range(len(names))]
    return "\n".join(head.ljust(head_w) + "".join(f"  {c:>{w}}" for c, w in zip(row, col_w))
                     for head, row in rows)


# --- BLEU -------------------------------------------------------------------------------

MAX_NGRAM_ORDER = 4

# mteval-v13a's punctuation rules, as sacreBLEU applies them, in order.  Each pattern consumes
# the characters it matches and re.sub never re-reads consumed text, so in "a.,5" the comma
# (whose left neighbour "." was consumed with the "a") is not split off by the second rule,
# nor by the third (a digit follows): the tokens are "a" "." ",5".  Keeping these consuming
# patterns, rather than lookarounds, is what makes the tokens agree with sacreBLEU on such
# strings.  Digits are [0-9] only: \d would also match non-ASCII digits such as Arabic-Indic
# ones, which mteval treats as letters ("٣.5" -> "٣" "." "5").
_13A_RULES = [
    # Split off every ASCII symbol except the apostrophe, comma, hyphen and period, which the
    # rules below (or no rule: "wasn't", "e-mail") handle.
    (re.compile(r"""([!"#$%&()*+/:;<=>?@\[\\\]^_`{|}~])"""), r" \1 "),
    # A period or comma after a non-digit is split off: "end." -> "end .", "3.14" is kept.
    (re.compile(r"([^0-9])([.,])"), r"\1 \2 "),
    # A period or comma before a non-digit is split off: "1,a" -> "1 , a", "1,000" is kept.
    (re.compile(r"([.,])([^0-9])"), r" \1 \2"),
    # A hyphen after a digit is split off: "1990-91" -> "1990 - 91".
    (re.compile(r"([0-9])(-)"), r"\1 \2 "),
]


def tokenize_13a(line: str) -> list[str]:
    """Split a detokenised sentence into tokens exactly as sacreBLEU's default "13a"
    tokenizer (the one of WMT's mteval-v13a.pl) does."""
    line = line.rstrip()                      # sacreBLEU strips trailing whitespace first
    line = line.replace("<skipped>", "")      # mteval's marker for untranslated segments
    line = line.replace("-\n", "")            # re-join words hyphenated across a line break
    line = line.replace("\n", " ")
    # Undo SGML escapes, in mteval's order: "&amp;quot;" decodes once (to "&quot;") but
    # "&amp;lt;" twice (to "<"), because &lt; is replaced after &amp;.
    for escaped, char in (("&quot;", '"'), ("&amp;", "&"), ("&lt;", "<"), ("&gt;", ">")):
        line = line.replace(escaped, char)
    line = f" {line} "      # a non-digit at both ends for the rules: ".5" -> "." "5"
    for pattern, replacement in _13A_RULES:
        line = pattern.sub(replacement, line)
    return line.split()


def _ngram_counts(tokens: list[str], max_order: int = MAX_NGRAM_ORDER) -> Counter:
    """Counts of every n-gram (as a tuple of tokens) for n = 1..max_order."""
    return Counter(tuple(tokens[i:i + n]) for n in range(1, max_order + 1)
                   for i in range(len(tokens) - n + 1))


@dataclass(frozen=True)
class BLEUScore:
    """Corpus BLEU and the statistics behind it (sacreBLEU's fields and text format).

    ``score`` is in 0..100; ``precisions[n-1]`` is the (smoothed) n-gram precision in percent;
    ``counts[n-1]`` / ``totals[n-1]`` are the clipped matching and the total hypothesis n-grams;
    ``bp`` is the brevity penalty; ``sys_len`` / ``ref_len`` are the total hypothesis length
    and the total of the chosen reference lengths, in tokens.  ``float(score)`` is the score.
    """
    score: float
    precisions: list[float] = field(default_factory=list)
    bp: float = 1.0
    sys_len: int = 0
    ref_len: int = 0
    counts: list[int] = field(default_factory=list)
    totals: list[int] = field(default_factory=list)

    @property
    def ratio(self) -> float:
        """Hypothesis length / reference length (0 when there is no reference text)."""
        return self.sys_len / self.ref_len if self.ref_len else 0.0

    def __float__(self) -> float:
        return float(self.score)

    def __str__(self) -> str:
        precisions = "/".join(f"{p:.1f}" for p in self.precisions)
        return (f"BLEU = {self.score:.2f} {precisions} (BP = {self.bp:.3f} "
                f"ratio = {self.ratio:.3f} hyp_len = {self.sys_len:d} "
                f"ref_len = {self.ref_len:d})")


def _as_references(refs, i: int, fn: str) -> list[str]:
    if isinstance(refs, str):                 # a lone string is one reference, not characters
        return [refs]
    refs = list(refs)
    if not refs:
        raise ValueError(f"{fn}: hypothesis {i} has no reference")
    if not all(isinstance(r, str) for r in refs):
        raise TypeError(f"{fn}: references[{i}] must be a string or a list of strings, "
                        f"got {refs!r}")
    return refs


def _pairs(fn: str, hypotheses, references) -> list[tuple[str, list[str]]]:
    """(hypothesis, its references) for each sentence, after the checks that catch the usual
    mistakes: one string instead of a list, lengths that differ (often sacreBLEU-style
    reference streams passed untransposed), a hypothesis that is not a string."""
    if isinstance(hypotheses, str):
        raise TypeError(f"{fn}: hypotheses must be a list of strings, not one string")
    hypotheses, references = list(hypotheses), list(references)
    if not hypotheses:
        raise ValueError(f"{fn}: no hypotheses")
    if len(hypotheses) != len(references):
        raise ValueError(f"{fn}: {len(hypotheses)} hypotheses but {len(references)} reference "
                         f"lists; references[i] must hold the references of hypothesis i "
                         f"(transpose sacreBLEU-style reference streams)")
    pairs = []
    for i, (hyp, refs) in enumerate(zip(hypotheses, references)):
        if not isinstance(hyp, str):
            raise TypeError(f"{fn}: hypotheses[{i}] must be a string, got {type(hyp).__name__}")
        pairs.append((hyp, _as_references(refs, i, fn)))
    return pairs


def bleu(hypotheses: Sequence[str], references: Sequence[Sequence[str]]) -> BLEUScore:
    """Corpus BLEU (Papineni et al., 2002) with sacreBLEU's default settings.

    ``hypotheses[i]`` is a system output and ``references[i]`` the list of reference
    translations of the same sentence (one or more; a bare string counts as one).  Note the
    layout differs from ``sacrebleu.corpus_bleu(hyps, streams)``, whose ``streams[k][i]`` is
    the k-th reference of sentence i: ``references[i] == [s[i] for s in streams]``.

    The computation, on text tokenised by ``tokenize_13a`` (case kept):

    1. For n = 1..4, each hypothesis n-gram matches at most as often as it occurs in the one
       reference where it is most frequent ("clipping": "the the the" earns no more credit
       than the reference has "the"s).  Matches (``counts``) and hypothesis n-grams
       (``totals``) are summed over the corpus before dividing: corpus BLEU is not a mean of
       sentence scores.
    2. Precision p_n = counts / totals.  "exp" smoothing: the k-th order (k = 1, 2, ...) with
       no match at all gets 1 / (2^k * totals) instead of 0, so one empty order does not zero
       the score.  No match of any order, or an order with no n-grams at all (every
       hypothesis shorter than n tokens), gives BLEU 0.
    3. Brevity penalty: r = sum over sentences of the reference length closest to the
       hypothesis length (ties to the shorter), c = total hypothesis length; BP = 1 if c >= r
       else exp(1 - r / c) (0 if c == 0), since precision alone rewards saying very little.
    4. BLEU = 100 * BP * (p_1 p_2 p_3 p_4)^(1/4).
    """
    n_max = MAX_NGRAM_ORDER
    counts, totals = [0] * n_max, [0] * n_max
    sys_len = ref_len = 0
    for hyp, refs in _pairs("bleu", hypotheses, references):
        ref_tokens = [tokenize_13a(r) for r in refs]
        # Clipping ceiling: each n-gram's largest count in any single reference.
        max_ref = Counter()
        for toks in ref_tokens:
            max_ref |= _ngram_counts(toks)        # Counter | keeps the larger of two counts
        hyp_tokens = tokenize_13a(hyp)
        for gram, c in _ngram_counts(hyp_tokens).items():
            totals[len(gram) - 1] += c
            counts[len(gram) - 1] += min(c, max_ref[gram])
        c_len = len(hyp_tokens)
        sys_len += c_len
        ref_len += min((len(t) for t in ref_tokens), key=lambda r: (abs(r - c_len), r))

    bp = 1.0 if sys_len >= ref_len else math.exp(1 - ref_len / sys_len) if sys_len else 0.0
    precisions = [0.0] * n_max
    if not any(counts):
        return BLEUScore(0.0, precisions, bp, sys_len, ref_len, counts, totals)
    zero_orders = 0
    for n in range(n_max):
        if totals[n] == 0:                    # no n-grams of this order (nor any higher)
            break
        if counts[n] == 0:
            zero_orders += 1
            precisions[n] = 100.0 / (2 ** zero_orders * totals[n])
        else:
            precisions[n] = 100.0 * counts[n] / totals[n]
    # Geometric mean, in log space.
    score = bp * math.exp(sum(math.log(p) for p in precisions) / n_max) if min(precisions) else 0.0
    return BLEUScore(score, precisions, bp, sys_len, ref_len, counts, totals)


# --- chrF and chrF++ ----------------------------------------------------------------------

# chrF++ splits one ASCII punctuation mark off the end (else the start) of each word, as the
# reference chrF++.py and sacreBLEU do; "(hi)" becomes "(hi" ")" (sacreBLEU issue #124).
_CHRF_PUNCTUATION = frozenset("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")
# sacreBLEU's stand-in for a precision or recall that has no denominator (eps_smoothing).
_CHRF_EPS = 1e-16


@dataclass(frozen=True)
class CHRFScore:
    """A corpus chrF score (0..100) and the settings that produced it.  ``str()`` prints it as
    sacreBLEU does, "chrF2 = 51.23", with a "+" per word order ("chrF2++" for chrF++);
    ``float()`` is the score."""
    score: float
    char_order: int = 6
    word_order: int = 0
    beta: float = 2

    @property
    def name(self) -> str:
        return f"chrF{self.beta}" + "+" * self.word_order

    def __float__(self) -> float:
        return float(self.score)

    def __str__(self) -> str:
        return f"{self.name} = {self.score:.2f}"


def _chrf_words(text: str) -> list[str]:
    """The words of chrF++: split at whitespace, then one punctuation mark split off the end
    of each word (or, failing that, off its start), so "dog." and "dog" share the word."""
    words = []
    for w in text.split():
        if len(w) > 1 and w[-1] in _CHRF_PUNCTUATION:
            words += [w[:-1], w[-1]]
        elif len(w) > 1 and w[0] in _CHRF_PUNCTUATION:
            words += [w[0], w[1:]]
        else:
            words.append(w)
    return words


def _chrf_ngrams(text: str, char_order: int, word_order: int, whitespace: bool) -> list[Counter]:
    """One Counter per order: character n-grams for n = 1..char_order (substrings of the text,
    whitespace removed unless ``whitespace``), then word n-grams for n = 1..word_order."""
    chars = text if whitespace else "".join(text.split())
    grams = [Counter(chars[i:i + n] for i in range(len(chars) - n + 1))
             for n in range(1, char_order + 1)]
    words = _chrf_words(text) if word_order else []
    grams += [Counter(tuple(words[i:i + n]) for i in range(len(words) - n + 1))
              for n in range(1, word_order + 1)]
    return grams


def _chrf_match(hyp_grams: list[Counter], ref_grams: list[Counter]) -> list[list[int]]:
    """Per order, [hypothesis n-grams, reference n-grams, matches] of one sentence against one
    reference.  Matches are clipped: an n-gram counts at most as often as the reference has
    it.  Where the reference has no n-grams of an order (it is too short), the hypothesis's
    n-grams of that order are not counted either, as in sacreBLEU: a precision over n-grams
    that could never match would only measure the reference's length."""
    stats = []
    for h, r in zip(hyp_grams, ref_grams):
        matches = sum(min(c, r[g]) for g, c in h.items())     # r[g] is 0 if absent
        stats.append([sum(h.values()) if r else 0, sum(r.values()), matches])
    return stats


def _chrf_f(stats: list[list[int]], beta: float, eps_smoothing: bool) -> float:
    """chrF in 0..100 from per-order [hyp, ref, match] counts (steps 4-5 of ``chrf``).  The
    arithmetic follows sacreBLEU's operation for operation, so the floats agree exactly."""
    factor = beta ** 2
    if eps_smoothing:
        # Every order counts: an undefined ratio is eps, and so is an F with a zero denominator.
        total = 0.0
        for n_hyp, n_ref, n_match in stats:
            prec = n_match / n_hyp if n_hyp > 0 else _CHRF_EPS
            rec = n_match / n_ref if n_ref > 0 else _CHRF_EPS
            denom = factor * prec + rec
            total += (1 + factor) * prec * rec / denom if denom > 0 else _CHRF_EPS
        return 100 * total / len(stats)
    # Effective order: average P and R over the orders that have n-grams on both sides only.
    avg_prec = avg_rec = 0.0
    effective = 0
    for n_hyp, n_ref, n_match in stats:
        if n_hyp > 0 and n_ref > 0:
            avg_prec += n_match / n_hyp
            avg_rec += n_match / n_ref
            effective += 1
    if effective:
        avg_prec /= effective
        avg_rec /= effective
    if not avg_prec + avg_rec:                # nothing matched (or nothing to compare)
        return 0.0
    score = (1 + factor) * avg_prec * avg_rec
    score /= factor * avg_prec + avg_rec
    return 100 * score


def chrf(hypotheses: Sequence[str], references: Sequence[Sequence[str]], char_order: int = 6,
         word_order: int = 0, beta: float = 2, whitespace: bool = False,
         eps_smoothing: bool = False) -> CHRFScore:
    """Corpus chrF (Popović, 2015) exactly as ``sacrebleu.corpus_chrf`` computes it; with
    ``word_order=2``, chrF++ (Popović, 2017).  Arguments are laid out as for ``bleu``:
    ``references[i]`` holds the reference(s) of ``hypotheses[i]`` (a bare string is one).

    chrF compares characters, not words, so it needs no tokenizer and gives partial credit
    for "walked" against "walks".  The computation (case kept):

    1. n-grams.  Character n-grams for n = 1..``char_order``: every substring of length n,
       counted, after removing all whitespace (so "New York" and "NewYork" agree; keep it
       with ``whitespace=True``).  chrF++ adds word n-grams for n = 1..``word_order``, of the
       whitespace-split words with one punctuation mark split off each word's end or start.
    2. Statistics per sentence and order: hypothesis n-grams, reference n-grams and matches,
       each n-gram matching at most as often as the reference has it (clipping, as in BLEU).
       A hypothesis's n-grams of an order its reference has none of are not counted.
    3. Several references: the sentence is scored against each (steps 4-5 on its own
       statistics) and the statistics of the best one kept; ties go to the first.
    4. The statistics are summed over the corpus (corpus chrF is not a mean of sentence
       scores).  Per order n, precision P_n = matches / hypothesis n-grams and recall
       R_n = matches / reference n-grams.  P and R are the means of P_n and R_n over the
       "effective" orders, those with n-grams on both sides: a corpus of 4-character
       sentences has no 6-grams, and is not punished for it.
    5. chrF = 100 * (1 + beta^2) P R / (beta^2 P + R), 0 if P + R = 0 (no match, or an empty
       hypothesis).  beta = 2 weighs recall twice as much as precision ("chrF2"): a system
       that leaves words out loses more than one that adds a few.

    ``eps_smoothing=True`` replaces step 4's averaging by the one of chrF++.py, Moses and
    NLTK: an F-score per order (P_n or R_n taken as 1e-16 where undefined), averaged over all
    ``char_order + word_order`` orders, so orders without n-grams pull the score down.
    """
    for name, value, low in (("char_order", char_order, 0), ("word_order", word_order, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"chrf: {name} must be a non-negative integer, got {value!r}")
    if char_order + word_order == 0:
        raise ValueError("chrf: char_order + word_order must be at least 1")
    if not beta > 0:
        raise ValueError(f"chrf: beta must be positive, got {beta!r}")
    totals = [[0, 0, 0] for _ in range(char_order + word_order)]
    for hyp, refs in _pairs("chrf", hypotheses, references):
        hyp_grams = _chrf_ngrams(hyp, char_order, word_order, whitespace)
        best, best_f = None, -1.0
        for ref in refs:
            stats = _chrf_match(hyp_grams, _chrf_ngrams(ref, char_order, word_order, whitespace))
            f = _chrf_f(stats, beta, eps_smoothing)
            if f > best_f:                    # strictly better: ties keep the first reference
                best, best_f = stats, f
        for total, stat in zip(totals, best):
            for k in range(3):
                total[k] += stat[k]
    return CHRFScore(_chrf_f(totals, beta, eps_smoothing), char_order, word_order, beta)


# --- exact match --------------------------------------------------------------------------

def exact_match(hypotheses: Sequence[str], references: Sequence[Sequence[str]]) -> float:
    """Fraction (in [0, 1]) of hypotheses equal to one of their references, after stripping
    whitespace at both ends; ``references[i]`` as for ``bleu``.  Nothing else is normalised:
    SQuAD's EM also lower-cases and drops punctuation and articles before comparing."""
    pairs = _pairs("exact_match", hypotheses, references)
    hits = sum(hyp.strip() in {r.strip() for r in refs} for hyp, refs in pairs)
    return hits / len(pairs)
