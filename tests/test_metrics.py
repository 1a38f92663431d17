"""Evaluation metrics: perplexity and bits, accuracy / precision / recall / F1 / confusion
matrix, corpus BLEU and chrF, exact match.

Three kinds of evidence: small vectors worked out by hand (the arithmetic is in the comments),
hypothesis properties that any correct implementation must have, and oracle comparisons with
scikit-learn and sacreBLEU on hypothesis-drawn inputs.  The oracles are not dependencies of
tinygradlm: those tests skip when the packages are absent, everything else always runs."""
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tinygradlm as tg
from tinygradlm.metrics import (BLEUScore, CHRFScore, accuracy, bits_per_char, bits_per_token,
                                bleu, chrf, confusion_matrix, exact_match, f1_score,
                                format_confusion_matrix, mean_nll, perplexity,
                                precision_recall_f1, tokenize_13a)

# --- perplexity and bits ----------------------------------------------------------------


def test_perplexity_of_a_mean_loss():
    assert perplexity(0.0) == 1.0                               # certain of every token
    assert perplexity(math.log(50)) == pytest.approx(50)        # uniform over 50 tokens
    assert perplexity(np.float32(math.log(3))) == pytest.approx(3, rel=1e-6)
    assert perplexity(tg.Tensor(np.array(math.log(7)))) == pytest.approx(7)   # a 0-d tensor


def test_perplexity_overflow_and_nan():
    assert perplexity(709.0) == pytest.approx(math.exp(709.0))   # the largest that fits
    assert perplexity(710.0) == math.inf                          # inf, not OverflowError
    assert perplexity(1e300) == math.inf
    assert math.isnan(perplexity(math.nan))                      # a diverged run stays visible


def test_corpus_perplexity_weights_by_tokens():
    # Two batches: NLL sums 6.0 over 2 tokens (mean 3) and 2.0 over 6 tokens (mean 1/3).
    # Token-weighted mean: (6 + 2) / (2 + 6) = 1 nat, so perplexity e.  The naive mean of the
    # batch means, (3 + 1/3) / 2 = 5/3, would over-weight the short batch.
    assert mean_nll([6.0, 2.0], [2, 6]) == 1.0
    assert perplexity(total_nll=[6.0, 2.0], n_tokens=[2, 6]) == pytest.approx(math.e)
    assert perplexity(total_nll=8.0, n_tokens=8) == pytest.approx(math.e)     # scalar form
    assert perplexity(total_nll=np.array([6.0, 2.0]), n_tokens=tg.Tensor(np.array([2., 6.]))) \
        == pytest.approx(math.e)
    # bits per token: 1 nat = 1/ln 2 bits; log(8) nats = 3 bits.
    assert bits_per_token(total_nll=[6.0, 2.0], n_tokens=[2, 6]) == pytest.approx(1 / math.log(2))
    assert bits_per_token(math.log(8)) == pytest.approx(3.0)


def test_bits_per_char_keeps_its_signature():
    # 3 bits per token, 4 tokens spelling 12 characters: 3 * 4 / 12 = 1 bit per character.
    assert bits_per_char(3 * math.log(2), 4, 12) == pytest.approx(1.0)
    assert bits_per_char(math.log(2)) == pytest.approx(1.0)        # char tokenizer defaults
    with pytest.raises(ValueError, match="positive"):
        bits_per_char(1.0, 0, 5)


@pytest.mark.parametrize("call, match", [
    (lambda: perplexity(), "either|both"),
    (lambda: perplexity(1.0, total_nll=2.0, n_tokens=2), "not both"),
    (lambda: perplexity(total_nll=2.0), "both"),
    (lambda: perplexity(total_nll=[1.0, 2.0], n_tokens=[3]), "2 entries.*1"),
    (lambda: perplexity(total_nll=[1.0], n_tokens=[0]), "positive total"),
    (lambda: perplexity(total_nll=[1.0, 1.0], n_tokens=[-1, 3]), "non-negative"),
    (lambda: perplexity(np.ones(3)), "single number"),
])
def test_perplexity_errors(call, match):
    with pytest.raises((TypeError, ValueError), match=match):
        call()


@given(st.lists(st.tuples(st.floats(0, 50), st.integers(1, 1000)), min_size=1, max_size=8))
def test_perplexity_forms_agree(batches):
    """Per-batch (mean loss, tokens) pairs: the corpus form equals exp of the hand-computed
    token-weighted mean, lies between the smallest and largest batch perplexity, and
    perplexity == 2 ** bits_per_token."""
    sums = [loss * n for loss, n in batches]
    counts = [n for _, n in batches]
    ppl = perplexity(total_nll=sums, n_tokens=counts)
    assert ppl == pytest.approx(perplexity(sum(sums) / sum(counts)), rel=1e-12)
    losses = [loss for loss, _ in batches]
    assert perplexity(min(losses)) * (1 - 1e-12) <= ppl <= perplexity(max(losses)) * (1 + 1e-12)
    assert 2 ** bits_per_token(total_nll=sums, n_tokens=counts) == pytest.approx(ppl, rel=1e-9)


# --- classification: fixed vectors --------------------------------------------------------

# Binary: positives are 1.              index: 0  1  2  3  4  5  6  7
BIN_TRUE = [1, 1, 1, 0, 0, 0, 0, 1]
BIN_PRED = [1, 0, 1, 1, 1, 0, 0, 1]
# pos_label=1: TP at 0, 2, 7 = 3; FP at 3, 4 = 2; FN at 1 = 1.
#   precision 3/5, recall 3/4, F1 = 2*3 / (2*3 + 2 + 1) = 6/9 = 2/3.
# pos_label=0: truly 0 at 3,4,5,6; predicted 0 at 1,5,6; TP at 5,6 = 2.
#   precision 2/3, recall 2/4, F1 = 2*2 / (4 + 3) = 4/7.

# Multiclass, string labels (sorted: bird, cat, dog).
MC_TRUE = ["cat", "cat", "cat", "dog", "dog", "bird"]
MC_PRED = ["cat", "dog", "cat", "dog", "cat", "cat"]
# Correct at 0, 2, 3: accuracy 3/6.  Per class (TP; predicted; truly):
#   bird: 0; 0; 1 -> P = 0/0 := 0, R = 0/1 = 0, F1 = 0/(1+0) = 0
#   cat:  2; 4; 3 -> P = 2/4,      R = 2/3,     F1 = 4/(3+4) = 4/7
#   dog:  1; 2; 2 -> P = 1/2,      R = 1/2,     F1 = 2/(2+2) = 1/2
# macro: P = (0 + 1/2 + 1/2)/3 = 1/3, R = (0 + 2/3 + 1/2)/3 = 7/18, F1 = (4/7 + 1/2)/3 = 5/14
# micro: TP 3, predicted 6, truly 6 -> P = R = F1 = 1/2 (= accuracy)
# weighted by support 1, 3, 2: P = (3/2 + 1)/6 = 5/12, R = (2 + 1)/6 = 1/2,
#   F1 = (12/7 + 1)/6 = 19/42


def test_accuracy_by_hand():
    assert accuracy(BIN_TRUE, BIN_PRED) == 5 / 8       # wrong at 1, 3, 4
    assert accuracy(MC_TRUE, MC_PRED) == 0.5
    assert accuracy([True, False], [True, True]) == 0.5


def test_binary_scores_by_hand():
    assert precision_recall_f1(BIN_TRUE, BIN_PRED) == pytest.approx((3 / 5, 3 / 4, 2 / 3))
    assert precision_recall_f1(BIN_TRUE, BIN_PRED, pos_label=0) == pytest.approx(
        (2 / 3, 1 / 2, 4 / 7))
    assert f1_score(BIN_TRUE, BIN_PRED) == pytest.approx(2 / 3)
    # The F1 is the harmonic mean of P and R: 2 * 0.6 * 0.75 / 1.35 = 2/3.
    assert 2 * 0.6 * 0.75 / (0.6 + 0.75) == pytest.approx(2 / 3)


def test_multiclass_scores_by_hand():
    assert precision_recall_f1(MC_TRUE, MC_PRED, average="macro") == pytest.approx(
        (1 / 3, 7 / 18, 5 / 14))
    assert precision_recall_f1(MC_TRUE, MC_PRED, average="micro") == pytest.approx(
        (0.5, 0.5, 0.5))
    assert precision_recall_f1(MC_TRUE, MC_PRED, average="weighted") == pytest.approx(
        (5 / 12, 1 / 2, 19 / 42))
    p, r, f = precision_recall_f1(MC_TRUE, MC_PRED, average=None)
    np.testing.assert_allclose(p, [0, 1 / 2, 1 / 2])
    np.testing.assert_allclose(r, [0, 2 / 3, 1 / 2])
    np.testing.assert_allclose(f, [0, 4 / 7, 1 / 2])
    assert f1_score(MC_TRUE, MC_PRED, average="macro") == pytest.approx(5 / 14)


def test_labels_select_and_order_classes():
    # Only cat and dog: macro F1 = (4/7 + 1/2)/2 = 15/28.  An absent class ("fish") scores 0
    # and still counts in the macro mean: (4/7 + 0)/2 = 2/7.
    assert f1_score(MC_TRUE, MC_PRED, average="macro", labels=["cat", "dog"]) == \
        pytest.approx(15 / 28)
    assert f1_score(MC_TRUE, MC_PRED, average="macro", labels=["cat", "fish"]) == \
        pytest.approx(2 / 7)
    # micro over cat and dog: TP 2 + 1 = 3, predicted 4 + 2 = 6, truly 3 + 2 = 5:
    #   P = 1/2, R = 3/5, F1 = 6/11.
    assert precision_recall_f1(MC_TRUE, MC_PRED, average="micro", labels=["cat", "dog"]) == \
        pytest.approx((1 / 2, 3 / 5, 6 / 11))


def test_zero_division_gives_zero():
    # Never predicts the positive class: P = 0/0 := 0, R = 0/2 = 0, F1 = 0/(2+0) = 0.
    assert precision_recall_f1([1, 0, 1], [0, 0, 0]) == (0.0, 0.0, 0.0)
    # pos_label=1 occurs nowhere (one label in all): all 0, as scikit-learn, no error.
    assert precision_recall_f1([0, 0], [0, 0]) == (0.0, 0.0, 0.0)
    # Perfect predictions score 1 whatever the averaging.
    for avg in ("binary", "micro", "macro", "weighted"):
        assert precision_recall_f1([0, 1, 1], [0, 1, 1], average=avg) == (1.0, 1.0, 1.0)


def test_confusion_matrix_by_hand():
    # Rows are the truth (bird, cat, dog), columns the prediction:
    #   the bird was called a cat; cats: 2 right, 1 called dog; dogs: 1 right, 1 called cat.
    cm = confusion_matrix(MC_TRUE, MC_PRED)
    np.testing.assert_array_equal(cm, [[0, 1, 0], [0, 2, 1], [0, 1, 1]])
    assert cm.dtype == np.int64
    # labels reorders, and drops samples with a label outside it (the bird row/column).
    np.testing.assert_array_equal(confusion_matrix(MC_TRUE, MC_PRED, labels=["dog", "cat"]),
                                  [[1, 1], [1, 2]])
    # Binary: rows/cols (0, 1).  True 0 at 3,4,5,6 -> predicted 1,1,0,0; true 1 at 0,1,2,7 ->
    # predicted 1,0,1,1.
    np.testing.assert_array_equal(confusion_matrix(BIN_TRUE, BIN_PRED), [[2, 2], [1, 3]])


def test_format_confusion_matrix():
    text = format_confusion_matrix(confusion_matrix(MC_TRUE, MC_PRED), ["bird", "cat", "dog"])
    assert text == ("true\\pred  bird  cat  dog\n"
                    "bird          0    1    0\n"
                    "cat           0    2    1\n"
                    "dog           0    1    1")
    assert format_confusion_matrix([[12, 0], [3, 1]]).splitlines() == [
        "true\\pred   0  1", "0          12  0", "1           3  1"]
    with pytest.raises(ValueError, match="2 label names for a 3x3"):
        format_confusion_matrix(np.eye(3, dtype=int), ["a", "b"])
    with pytest.raises(ValueError, match="square"):
        format_confusion_matrix(np.ones((2, 3)))


def test_inputs_as_arrays_and_tensors():
    t, p = np.array(BIN_TRUE), tg.Tensor(np.array(BIN_PRED))
    assert accuracy(t, p) == accuracy(BIN_TRUE, BIN_PRED)
    assert f1_score(tg.Tensor(np.array(BIN_TRUE, dtype=np.float64)), p) == pytest.approx(2 / 3)
    # argmax of a tensor of logits is the usual source of predictions.
    logits = tg.Tensor(np.array([[0.1, 2.0], [3.0, -1.0], [0.0, 0.5]]))
    assert accuracy([1, 0, 0], logits.argmax(-1)) == pytest.approx(2 / 3)


@pytest.mark.parametrize("call, match", [
    (lambda: accuracy([0, 1, 1], [0, 1, 1, 0]), "y_true has 3 samples but y_pred has 4"),
    (lambda: confusion_matrix([1], []), "y_true has 1 samples but y_pred has 0"),
    (lambda: accuracy([], []), "empty"),
    (lambda: f1_score([0, 1, 2], [0, 1, 1]), "at most 2 distinct labels.*macro"),
    (lambda: f1_score(["a", "b"], ["a", "a"]), r"pos_label=1 is not a valid label.*'a', 'b'"),
    (lambda: f1_score([0, 2], [2, 2]), r"pos_label=1 is not a valid label"),
    (lambda: f1_score([0, 1], [0, 1], average="samples"), "average must be one of"),
    (lambda: accuracy([[0, 1]], [[0, 1]]), "1-D"),
    (lambda: accuracy([0, 1], [0.2, 0.9]), "non-integer"),
    (lambda: accuracy([0, 1], [np.nan, 1.0]), "NaN"),
    (lambda: accuracy([0, 1], ["0", "1"]), "mix string and numeric"),
    (lambda: confusion_matrix([0, 1], [0, 1], labels=[5, 6]), "none of labels"),
    (lambda: confusion_matrix([0, 1], [0, 1], labels=[]), "at least one label"),
    (lambda: f1_score([0, 1], [0, 1], average="macro", labels=[1, 1]), "duplicates"),
])
def test_classification_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()


# --- classification: properties -----------------------------------------------------------

@st.composite
def label_pairs(draw, max_classes=5, max_n=30):
    """(y_true, y_pred): two equal-length int label arrays over a few classes."""
    k = draw(st.integers(1, max_classes))
    n = draw(st.integers(1, max_n))
    labels = st.integers(0, k - 1)
    t = draw(st.lists(labels, min_size=n, max_size=n))
    p = draw(st.lists(labels, min_size=n, max_size=n))
    return np.array(t), np.array(p)


@given(label_pairs())
def test_accuracy_and_confusion_matrix_agree(pair):
    t, p = pair
    acc = accuracy(t, p)
    assert 0.0 <= acc <= 1.0
    cm = confusion_matrix(t, p)
    labels = np.union1d(t, p)
    assert cm.sum() == len(t)
    assert np.trace(cm) == round(acc * len(t))
    np.testing.assert_array_equal(cm.sum(axis=1), [(t == c).sum() for c in labels])
    np.testing.assert_array_equal(cm.sum(axis=0), [(p == c).sum() for c in labels])
    # Swapping truth and prediction transposes the matrix.
    np.testing.assert_array_equal(confusion_matrix(p, t), cm.T)


@given(label_pairs())
def test_micro_f1_is_accuracy(pair):
    """Single-label data: each error is one FP (for the predicted class) and one FN (for the
    true one), so pooled P, R and F1 all equal accuracy."""
    t, p = pair
    assert precision_recall_f1(t, p, average="micro") == pytest.approx((accuracy(t, p),) * 3)


@given(label_pairs())
def test_f1_is_harmonic_mean_and_swapping_swaps_p_and_r(pair):
    t, p = pair
    prec, rec, f1 = precision_recall_f1(t, p, average=None)
    for x in (prec, rec, f1):
        assert np.all((0 <= x) & (x <= 1))
    harmonic = np.divide(2 * prec * rec, prec + rec, out=np.zeros_like(f1), where=prec + rec > 0)
    np.testing.assert_allclose(f1, harmonic, atol=1e-12)
    # Swapping y_true and y_pred swaps FP and FN: precision <-> recall, F1 unchanged.
    prec2, rec2, f1_2 = precision_recall_f1(p, t, average=None)
    np.testing.assert_allclose(prec2, rec)
    np.testing.assert_allclose(rec2, prec)
    np.testing.assert_allclose(f1_2, f1)
    assert f1_score(p, t, average="macro") == pytest.approx(f1_score(t, p, average="macro"))


@given(label_pairs(), st.randoms(use_true_random=False))
def test_scores_ignore_sample_order_and_label_names(pair, rnd):
    t, p = pair
    order = list(range(len(t)))
    rnd.shuffle(order)
    # Renaming the classes by any bijection (here to shuffled strings) changes nothing
    # but the order of per-class entries.
    names = [f"c{i}" for i in range(10)]
    rnd.shuffle(names)
    rename = np.array(names)
    for avg in ("micro", "macro", "weighted"):
        base = precision_recall_f1(t, p, average=avg)
        assert precision_recall_f1(t[order], p[order], average=avg) == pytest.approx(base)
        assert precision_recall_f1(rename[t], rename[p], average=avg) == pytest.approx(base)


# --- classification: scikit-learn oracle --------------------------------------------------

@pytest.fixture(scope="module")
def skm():
    return pytest.importorskip("sklearn.metrics")


@settings(max_examples=150)
@given(label_pairs(max_classes=4, max_n=15), st.sampled_from([0, 1, 2]),
       st.none() | st.lists(st.integers(0, 4), min_size=1, max_size=4, unique=True))
def test_matches_sklearn(skm, pair, pos_label, labels):
    import warnings
    t, p = pair
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")       # sklearn's UndefinedMetricWarning and friends
        assert accuracy(t, p) == pytest.approx(skm.accuracy_score(t, p), abs=1e-15)
        for avg in ("binary", "micro", "macro", "weighted", None):
            try:
                want = skm.precision_recall_fscore_support(
                    t, p, average=avg, pos_label=pos_label, labels=labels, zero_division=0)[:3]
            except ValueError:
                with pytest.raises(ValueError):
                    precision_recall_f1(t, p, average=avg, pos_label=pos_label, labels=labels)
                continue
            got = precision_recall_f1(t, p, average=avg, pos_label=pos_label, labels=labels)
            np.testing.assert_allclose(np.array(got, dtype=float), np.array(want, dtype=float),
                                       atol=1e-12)
        try:
            want_cm = skm.confusion_matrix(t, p, labels=labels)
        except ValueError:
            with pytest.raises(ValueError):
                confusion_matrix(t, p, labels=labels)
        else:
            np.testing.assert_array_equal(confusion_matrix(t, p, labels=labels), want_cm)


# --- BLEU ---------------------------------------------------------------------------------

# sacreBLEU's README example.  sacreBLEU takes reference *streams* (streams[k][i] = k-th
# reference of sentence i); ours takes per-hypothesis lists, hence the transpose.
README_HYPS = ["The dog bit the man.", "It wasn't surprising.", "The man had just bitten him."]
README_STREAMS = [["The dog bit the man.", "It was not unexpected.", "The man bit him first."],
                  ["The dog had bit the man.", "No one was surprised.",
                   "The man had bitten the dog."]]
README_REFS = [list(refs) for refs in zip(*README_STREAMS)]


def test_bleu_sacrebleu_readme_example():
    # Tokens (13a splits off the final "."; "wasn't" stays one token):
    #   h1 "The dog bit the man ."        (6)  = ref 1 exactly (6; ref 2 has 7): closest 6
    #       matches 6/6, 5/5, 4/4, 3/3
    #   h2 "It wasn't surprising ."       (4)  refs have 5 and 5 tokens: closest 5
    #       1-grams "It", "." match: 2/4; no longer n-gram matches: 0/3, 0/2, 0/1
    #   h3 "The man had just bitten him ." (7) refs 6 and 7 tokens: closest 7
    #       1-grams all but "just": 6/7; 2-grams "The man", "man had": 2/6;
    #       3-gram "The man had": 1/5; 4-grams 0/4
    # counts 14, 7, 5, 3 over totals 17, 14, 11, 8; hyp_len 17, ref_len 6 + 5 + 7 = 18.
    # BP = exp(1 - 18/17) = 0.94287;  (14/17 * 7/14 * 5/11 * 3/8)^(1/4) = 0.070187^(1/4) = 0.51471
    # BLEU = 100 * 0.94287 * 0.51471 = 48.53.
    b = bleu(README_HYPS, README_REFS)
    assert isinstance(b, BLEUScore)
    assert round(b.score, 2) == 48.53 and round(float(b), 2) == 48.53
    assert b.counts == [14, 7, 5, 3] and b.totals == [17, 14, 11, 8]
    assert (b.sys_len, b.ref_len) == (17, 18)
    assert b.bp == pytest.approx(math.exp(1 - 18 / 17))
    assert b.precisions == pytest.approx([100 * 14 / 17, 50.0, 100 * 5 / 11, 37.5])
    expected = 100 * math.exp(1 - 18 / 17) * (14 / 17 * 7 / 14 * 5 / 11 * 3 / 8) ** 0.25
    assert b.score == pytest.approx(expected, rel=1e-12)
    assert str(b) == ("BLEU = 48.53 82.4/50.0/45.5/37.5 "
                      "(BP = 0.943 ratio = 0.944 hyp_len = 17 ref_len = 18)")


def test_bleu_clipping_and_exp_smoothing():
    # "the" x7 against "the cat is on the mat": the reference has 2 "the"s, so the 7
    # hypothesis unigrams are clipped to 2 matches: p1 = 2/7.  "the the" etc. never match:
    # exp smoothing gives the k-th zero order 1 / (2^k * total):
    #   p2 = 1/(2*6), p3 = 1/(4*5), p4 = 1/(8*4).   hyp 7 >= ref 6 tokens: BP = 1.
    # BLEU = 100 * (2/7 * 1/12 * 1/20 * 1/32)^(1/4) = 7.81
    b = bleu(["the the the the the the the"], [["the cat is on the mat"]])
    assert b.counts == [2, 0, 0, 0] and b.totals == [7, 6, 5, 4]
    assert b.precisions == pytest.approx([100 * 2 / 7, 100 / 12, 100 / 20, 100 / 32])
    assert b.bp == 1.0
    assert b.score == pytest.approx(100 * (2 / 7 / 12 / 20 / 32) ** 0.25)
    assert round(b.score, 2) == 7.81


def test_bleu_closest_reference_length_ties_to_shorter():
    # 5 tokens, references of 4 and 6 tokens: both 1 away, the shorter (4) is used, so no
    # brevity penalty: BLEU 100.  Ties to the longer would give BP = exp(1 - 6/5) = 0.819.
    b = bleu(["a b c d e"], [["a b c d", "a b c d e f"]])
    assert (b.sys_len, b.ref_len, b.bp) == (5, 4, 1.0)
    assert b.score == pytest.approx(100.0)       # exp(log 100): 100.00000000000004, as sacreBLEU
    # Corpus level: 3 tokens vs refs 2/4 -> 2; 5 tokens vs refs 4/6 -> 4: ref_len 6.
    b = bleu(["a b c", "x y z w v"], [["a b", "a b c d"], ["x y z w", "x y z w v u"]])
    assert (b.sys_len, b.ref_len, b.score) == (8, 6, pytest.approx(100.0))


def test_bleu_brevity_penalty_and_short_hypotheses():
    # "a b" against "a b c d": every n-gram it has matches (p1 = p2 = 100%), but it has no
    # 3- or 4-grams at all, and sacreBLEU's corpus BLEU is then 0 (smoothing only applies to
    # orders that have n-grams).  BP = exp(1 - 4/2) = 1/e.
    b = bleu(["a b"], [["a b c d"]])
    assert b.precisions == [100.0, 100.0, 0.0, 0.0]
    assert b.bp == pytest.approx(math.exp(-1))
    assert b.score == 0.0
    # Adding a longer sentence supplies 3- and 4-grams and the score becomes positive.
    assert bleu(["a b", "p q r s t"], [["a b c d"], ["p q r s t"]]).score > 0


def test_bleu_empty_hypotheses_score_zero():
    # No tokens: nothing matches, BLEU 0; BP = 0 (c = 0); ref_len = closest to 0 = 2 + 1.
    b = bleu(["", "   "], [["a b"], ["c", "c d e"]])
    assert (b.score, b.bp, b.sys_len, b.ref_len) == (0.0, 0.0, 0, 3)
    assert b.precisions == [0.0] * 4 and b.totals == [0] * 4
    assert str(b) == ("BLEU = 0.00 0.0/0.0/0.0/0.0 "
                      "(BP = 0.000 ratio = 0.000 hyp_len = 0 ref_len = 3)")


def test_bleu_bare_string_reference_and_identity():
    # A lone string in references[i] is one reference, not a list of characters.
    sents = ["The quick brown fox jumps.", "Over the lazy dog, twice!"]
    assert bleu(sents, sents).score == pytest.approx(100.0)
    assert bleu(sents, [[s] for s in sents]).score == pytest.approx(100.0)


@pytest.mark.parametrize("call, exc, match", [
    (lambda: bleu([], []), ValueError, "no hypotheses"),
    (lambda: bleu(["a", "b"], [["a"]]), ValueError, "2 hypotheses but 1 reference"),
    (lambda: bleu(["a"], [[]]), ValueError, "hypothesis 0 has no reference"),
    (lambda: bleu("a b", [["a b"]]), TypeError, "not one string"),
    (lambda: bleu([None], [["a"]]), TypeError, r"hypotheses\[0\]"),
    (lambda: bleu(["a"], [["a", None]]), TypeError, r"references\[0\]"),
])
def test_bleu_errors(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


@pytest.mark.parametrize("text, tokens", [
    ("Hello, world!", ["Hello", ",", "world", "!"]),
    # "$" always splits; "3.14" and "1,000" keep digit-flanked separators; "14," splits
    # because the comma is followed by a space.
    ("It costs $3.14, or 1,000 yen.",
     ["It", "costs", "$", "3.14", ",", "or", "1,000", "yen", "."]),
    ("1990-91 e-mail", ["1990", "-", "91", "e-mail"]),        # hyphen split only after a digit
    ("It wasn't (really) 50% off!",
     ["It", "wasn't", "(", "really", ")", "50", "%", "off", "!"]),
    # Escapes decode in the order quot, amp, lt, gt: "&amp;lt;" -> "&lt;" -> "<".
    ("&quot;Hi&quot; &amp;lt;b&amp;gt;", ['"', "Hi", '"', "<", "b", ">"]),
    ("hyphen-\nated two\nlines<skipped>", ["hyphenated", "two", "lines"]),
    # The leading pad space is a non-digit: ".5" -> ". 5"; "x.y" splits both ways.
    (".5 5. x.y", [".", "5", "5", ".", "x", ".", "y"]),
    # Consumed matches: "a." is split, then "," (its left neighbour taken) stays with "5".
    ("a.,5", ["a", ".", ",5"]),
    ("\u0663.5", ["\u0663", ".", "5"]),       # an Arabic-Indic digit is not [0-9]
    ("trailing-\n", ["trailing-"]),           # rstrip first, so this "-\n" is never joined
    ("", []),
])
def test_tokenize_13a_by_hand(text, tokens):
    assert tokenize_13a(text) == tokens


# --- BLEU: sacreBLEU oracle ---------------------------------------------------------------

@pytest.fixture(scope="module")
def sacrebleu():
    return pytest.importorskip("sacrebleu")


# Words and punctuation that exercise every 13a rule: digits next to . , -, SGML escapes,
# apostrophes, brackets, <skipped>, line breaks, non-ASCII letters and digits and spaces.
_PIECES = ("the a dog man bit had him it wasn't 3.14 1990-91 e-mail U.S. x,y 1,000 .5 5. ,a "
           "naïve \u0663 — …").split() + list(".,;:!?\"'()-[]{}/\\&<>@#$%^*_+=|~`") + [
    "&quot;", "&amp;", "&lt;", "&gt;", "&amp;quot;", "<skipped>", "-\n", "\n", " ", "\t",
    "\u00a0", "\u2009"]
_sentences = st.lists(st.sampled_from(_PIECES) | st.integers(0, 99).map(str), max_size=12) \
    .flatmap(lambda xs: st.lists(st.sampled_from(["", " ", "  "]), min_size=len(xs),
                                 max_size=len(xs))
             .map(lambda seps: "".join(x + s for x, s in zip(xs, seps))))


@st.composite
def bleu_cases(draw):
    """(hypotheses, reference streams): 1-6 sentences, 1-3 references each; references copy
    their hypothesis some of the time, so that long n-grams match too."""
    hyps = draw(st.lists(_sentences, min_size=1, max_size=6))
    n_refs = draw(st.integers(1, 3))
    streams = [[h if draw(st.booleans()) and draw(st.booleans()) else draw(_sentences)
                for h in hyps] for _ in range(n_refs)]
    return hyps, streams


def test_bleu_readme_example_with_sacrebleu(sacrebleu):
    want = sacrebleu.corpus_bleu(README_HYPS, README_STREAMS)
    assert bleu(README_HYPS, README_REFS).score == want.score
    assert str(bleu(README_HYPS, README_REFS)) == str(want)


@settings(max_examples=300)
@given(_sentences)
def test_tokenize_13a_matches_sacrebleu(sacrebleu, text):
    from sacrebleu.tokenizers.tokenizer_13a import Tokenizer13a
    # sacreBLEU right-strips each segment before its 13a tokenizer sees it.
    assert tokenize_13a(text) == Tokenizer13a()(text.rstrip()).split()


@settings(max_examples=200)
@given(bleu_cases())
def test_bleu_matches_sacrebleu(sacrebleu, case):
    hyps, streams = case
    want = sacrebleu.corpus_bleu(hyps, streams)
    got = bleu(hyps, [list(refs) for refs in zip(*streams)])
    assert (got.counts, got.totals, got.sys_len, got.ref_len) == \
        (want.counts, want.totals, want.sys_len, want.ref_len)
    assert got.bp == want.bp and got.precisions == want.precisions
    assert got.score == pytest.approx(want.score, rel=1e-12, abs=1e-12)
    assert str(got) == str(want)


# --- chrF ---------------------------------------------------------------------------------

def test_chrf_by_hand():
    # "the cat" vs "the cats", whitespace removed: "thecat" (6 chars) vs "thecats" (7).
    # Every hypothesis n-gram occurs in the reference ("t" twice in both), so for n = 1..6
    # matches = hypothesis n-grams = 6, 5, 4, 3, 2, 1 and P_n = 1; the reference has
    # 7, 6, 5, 4, 3, 2 n-grams, so R_n = 6/7, 5/6, 4/5, 3/4, 2/3, 1/2.
    # P = 1, R = (6/7 + 5/6 + 4/5 + 3/4 + 2/3 + 1/2) / 6 = 4.40714 / 6 = 0.734524
    # chrF2 = 100 * 5 P R / (4 P + R) = 100 * 3.67262 / 4.73452 = 77.57.
    c = chrf(["the cat"], [["the cats"]])
    r = (6 / 7 + 5 / 6 + 4 / 5 + 3 / 4 + 2 / 3 + 1 / 2) / 6
    assert isinstance(c, CHRFScore)
    assert c.score == pytest.approx(100 * 5 * r / (4 + r), rel=1e-12)
    assert round(float(c), 2) == 77.57 and str(c) == "chrF2 = 77.57"
    assert (c.char_order, c.word_order, c.beta) == (6, 0, 2)
    # Swapping the two swaps P and R: with beta = 2 the missing "s" (low recall) above costs
    # more than an extra one (low precision): 100 * 5 r / (4 r + 1) = 94.6.
    assert chrf(["the cats"], ["the cat"]).score == pytest.approx(100 * 5 * r / (4 * r + 1))
    # beta = 1 weighs them equally: the harmonic mean 2 P R / (P + R), the same both ways.
    assert chrf(["the cat"], ["the cats"], beta=1).score == pytest.approx(
        chrf(["the cats"], ["the cat"], beta=1).score) == pytest.approx(200 * r / (1 + r))


def test_chrf_effective_order_and_eps_smoothing():
    # "ab" vs "ab": 1- and 2-grams match perfectly, orders 3..6 have no n-grams on either
    # side and are skipped: chrF 100.  With eps_smoothing every order counts, the empty ones
    # with F = 1e-16: (1 + 1 + 4e-16) / 6 = 33.33.
    assert chrf(["ab"], ["ab"]).score == 100.0
    assert chrf(["ab"], ["ab"], eps_smoothing=True).score == pytest.approx(100 / 3)
    # Whitespace is removed before counting: "a b" and "ab" are the same text...
    assert chrf(["a b"], ["ab"]).score == 100.0
    # ...unless kept: "a b" has 1-grams a, " ", b (P = 2/3, R = 1) and 2-grams "a ", " b"
    # (P = 0/2, R = 0/1): P = 1/3, R = 1/2, chrF2 = 5 * 1/6 / (4/3 + 1/2) = 5/11.
    assert chrf(["a b"], ["ab"], whitespace=True).score == pytest.approx(100 * 5 / 11)


def test_chrf_hypothesis_ngrams_need_reference_ngrams():
    # Sentence 1 "abcd" vs "ab": the reference has no 3- or 4-grams, so the hypothesis's are
    # not counted.  Sentence 2 "xyz" vs "xyz" matches exactly.  Summed [hyp, ref, match]:
    #   n=1: 4+3, 2+3, 2+3 -> P 5/7, R 1     n=2: 3+2, 1+2, 1+2 -> P 3/5, R 1
    #   n=3: 0+1, 0+1, 0+1 -> P 1,   R 1     (counting "abc" "bcd" would make P_3 = 1/3)
    #   n=4..6: no reference n-grams anywhere: not effective.
    # P = (5/7 + 3/5 + 1) / 3 = 27/35, R = 1: chrF2 = 5 * 27/35 / (4 * 27/35 + 1) = 135/143.
    assert chrf(["abcd", "xyz"], ["ab", "xyz"]).score == pytest.approx(100 * 135 / 143)
    # One sentence alone: P = (2/4 + 1/3) / 2 = 5/12, R = 1: 5 * 5/12 / (20/12 + 1) = 25/32.
    assert chrf(["abcd"], ["ab"]).score == pytest.approx(100 * 25 / 32)


def test_chrf_multiple_references_keep_the_best():
    # Against "abd" the hypothesis "abc" shares "a", "b", "ab"; against "xyz" nothing: the
    # score is the one against the better reference, whatever the order.
    best = chrf(["abc"], ["abd"]).score
    assert best > 0
    assert chrf(["abc"], [["xyz", "abd"]]).score == best
    assert chrf(["abc"], [["abd", "xyz"]]).score == best
    # At corpus level the chosen reference's counts are summed, so a sentence's choice
    # changes the corpus score even when the sentence itself scores the same.
    assert chrf(["abc", "q"], [["xyz", "abd"], "q"]).score == \
        chrf(["abc", "q"], ["abd", "q"]).score


def test_chrf_empty_hypotheses():
    # Nothing to match: 0.  Nothing on either side: no effective order, also 0.
    assert chrf([""], ["abc"]).score == 0.0
    assert chrf(["   "], [""]).score == 0.0
    assert str(chrf([""], ["abc"])) == "chrF2 = 0.00"
    # An empty hypothesis scores 0 against every reference; the tie keeps the first one,
    # whose n-grams then count as missed.  With ["a", "abcdef"] (first "a"), plus "a" vs
    # "a": n=1 hyp 0+1, ref 1+1, match 0+1 -> P 1, R 1/2; no higher order is effective.
    # chrF2 = 5 * 1/2 / (4 + 1/2) = 5/9.  Had "abcdef" been kept, R_1 would be 1/7.
    assert chrf(["", "a"], [["a", "abcdef"], ["a"]]).score == pytest.approx(100 * 5 / 9)
    assert chrf(["", "a"], [["abcdef", "a"], ["a"]]).score == pytest.approx(
        100 * 5 * (1 / 7) / (4 + 1 / 7))


def test_chrf_plus_plus_words_and_name():
    # chrF++ (word_order=2): identical text scores 100; the name gains a "+" per word order.
    c = chrf(["The cat sat."], ["The cat sat."], word_order=2)
    assert c.score == 100.0 and str(c) == "chrF2++ = 100.00" and c.word_order == 2
    # Word n-grams alone (char_order=0): "the sat cat" vs "the cat sat" share all 3 words
    # (P_1 = R_1 = 1) but none of the 2 bigrams (P_2 = R_2 = 0): P = R = 1/2, chrF 50.
    # Word unigrams alone cannot see the order: 100.
    assert chrf(["the sat cat"], ["the cat sat"], char_order=0, word_order=2).score == 50.0
    assert chrf(["the sat cat"], ["the cat sat"], char_order=0, word_order=1).score == 100.0
    # One punctuation mark is split off the end of a word, so "sat." still matches "sat".
    assert chrf(["sat."], ["sat ."], char_order=0, word_order=1).score == 100.0
    assert str(chrf(["x"], ["x"], beta=1, word_order=1)) == "chrF1+ = 100.00"


@pytest.mark.parametrize("call, exc, match", [
    (lambda: chrf([], []), ValueError, "chrf: no hypotheses"),
    (lambda: chrf(["a", "b"], [["a"]]), ValueError, "2 hypotheses but 1 reference"),
    (lambda: chrf(["a"], [[]]), ValueError, "hypothesis 0 has no reference"),
    (lambda: chrf("a b", [["a b"]]), TypeError, "not one string"),
    (lambda: chrf([None], [["a"]]), TypeError, r"hypotheses\[0\]"),
    (lambda: chrf(["a"], [["a", None]]), TypeError, r"chrf: references\[0\]"),
    (lambda: chrf(["a"], ["a"], char_order=0), ValueError, "at least 1"),
    (lambda: chrf(["a"], ["a"], word_order=-1), ValueError, "word_order must be"),
    (lambda: chrf(["a"], ["a"], char_order=2.5), ValueError, "char_order must be"),
    (lambda: chrf(["a"], ["a"], beta=0), ValueError, "beta must be positive"),
])
def test_chrf_errors(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_exact_match():
    # Hits: 0 (after stripping), 2 (the second reference); misses: 1 (case), 3.
    hyps = ["  Paris\n", "paris", "4", "blue"]
    refs = ["Paris", ["Paris"], ["four", " 4 "], ["green"]]
    assert exact_match(hyps, refs) == 0.5
    assert exact_match(["a"], ["a"]) == 1.0 and exact_match([""], [" "]) == 1.0
    with pytest.raises(ValueError, match="exact_match: 2 hypotheses but 1"):
        exact_match(["a", "b"], ["a"])
    with pytest.raises(TypeError, match="not one string"):
        exact_match("a", ["a"])
    with pytest.raises(ValueError, match="no hypotheses"):
        exact_match([], [])


# --- chrF: sacreBLEU oracle ---------------------------------------------------------------

# chrF has no tokenizer: any text goes, so besides the BLEU sentences (punctuation, escapes,
# non-ASCII letters and spaces) draw arbitrary unicode, and references that are edits of
# their hypothesis so that long n-grams match.
_chrf_text = _sentences | st.text(max_size=25)


@st.composite
def chrf_cases(draw):
    """(hypotheses, reference streams): 1-5 sentences, 1-3 references each."""
    hyps = draw(st.lists(_chrf_text, min_size=1, max_size=5))

    def reference(h):
        kind = draw(st.sampled_from(["copy", "edit", "other"]))
        if kind == "copy":
            return h
        if kind == "edit":
            i = draw(st.integers(0, len(h)))
            return h[:i] + draw(_chrf_text) + h[i + draw(st.integers(0, 3)):]
        return draw(_chrf_text)

    streams = [[reference(h) for h in hyps] for _ in range(draw(st.integers(1, 3)))]
    return hyps, streams


def test_chrf_readme_example_with_sacrebleu(sacrebleu):
    for kw in ({}, {"word_order": 2}, {"eps_smoothing": True}):
        want = sacrebleu.corpus_chrf(README_HYPS, README_STREAMS, **kw)
        got = chrf(README_HYPS, README_REFS, **kw)
        assert got.score == want.score and str(got) == str(want)


@settings(max_examples=150)
@given(chrf_cases(), st.sampled_from([(6, 0), (6, 2), (1, 0), (3, 1), (0, 2)]),
       st.sampled_from([2, 1, 3]), st.booleans(), st.booleans())
def test_chrf_matches_sacrebleu(sacrebleu, case, orders, beta, whitespace, eps_smoothing):
    from sacrebleu.metrics import CHRF
    hyps, streams = case
    char_order, word_order = orders
    want = CHRF(char_order=char_order, word_order=word_order, beta=beta, whitespace=whitespace,
                eps_smoothing=eps_smoothing).corpus_score(hyps, streams)
    got = chrf(hyps, [list(refs) for refs in zip(*streams)], char_order=char_order,
               word_order=word_order, beta=beta, whitespace=whitespace,
               eps_smoothing=eps_smoothing)
    # Same statistics and the same arithmetic in the same order: the floats agree exactly.
    assert got.score == want.score
    assert str(got) == str(want)


@settings(max_examples=100)
@given(chrf_cases())
def test_chrf_default_matches_corpus_chrf(sacrebleu, case):
    """The default call is sacreBLEU's default ``corpus_chrf`` (chrF2, whitespace removed)."""
    hyps, streams = case
    want = sacrebleu.corpus_chrf(hyps, streams)
    got = chrf(hyps, [list(refs) for refs in zip(*streams)])
    assert got.score == want.score and str(got) == str(want)
    assert 0.0 <= got.score <= 100.0
