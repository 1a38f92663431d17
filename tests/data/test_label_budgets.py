"""``label_budget_subsets``: the training subsets of a learning curve are class-balanced,
nested across budgets and the same for every caller with the same seed (so both arms of the
pretrained-vs-scratch comparison train on identical examples)."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tinygradlm.data import label_budget_subsets, stdlib_function_dataset


@st.composite
def labels_and_budgets(draw):
    sizes = draw(st.lists(st.integers(1, 40), min_size=2, max_size=6))        # per class
    labels = np.repeat(np.arange(len(sizes)), sizes)
    labels = labels[np.random.default_rng(draw(st.integers(0, 99))).permutation(len(labels))]
    budgets = sorted(set(draw(st.lists(st.floats(0.01, 1.0), min_size=1, max_size=5))))
    return labels, budgets, draw(st.integers(0, 2 ** 32 - 1))


@given(labels_and_budgets())
def test_subsets_are_balanced_nested_and_deterministic(case):
    labels, budgets, seed = case
    subsets = label_budget_subsets(labels, budgets, seed)
    sizes = np.bincount(labels)
    assert len(subsets) == len(budgets)
    previous = set()
    for fraction, subset in zip(budgets, subsets):
        assert subset.dtype.kind == "i" and np.all(np.diff(subset) > 0)    # sorted, unique
        assert len(subset) == min(len(labels), max(len(sizes), round(fraction * len(labels))))
        counts = np.bincount(labels[subset], minlength=len(sizes))
        assert np.all(counts >= 1)                       # every class is in every subset
        # Balanced: a class has one fewer than the most at worst, unless it has run out.
        assert np.all(counts >= np.minimum(sizes, counts.max() - 1))
        assert previous <= set(subset.tolist())          # nested: a bigger budget adds
        previous = set(subset.tolist())
    again = label_budget_subsets(labels, budgets, seed)
    assert all(np.array_equal(a, b) for a, b in zip(subsets, again))


def test_full_budget_is_everything_and_seeds_differ():
    labels = np.arange(200) % 4
    full, = label_budget_subsets(labels, [1.0], seed=3)
    assert np.array_equal(full, np.arange(200))
    small = [label_budget_subsets(labels, [0.1], seed)[0] for seed in range(5)]
    assert len({tuple(s) for s in small}) == 5           # another seed, another subset
    assert all(np.array_equal(np.bincount(labels[s]), [5, 5, 5, 5]) for s in small)


def test_small_class_runs_out_and_the_others_take_its_share():
    labels = np.array([0] * 50 + [1] * 4 + [2] * 46)
    subset, = label_budget_subsets(labels, [0.3], seed=0)
    assert np.bincount(labels[subset]).tolist() == [13, 4, 13]


def test_the_builtin_task_at_five_percent():
    task = stdlib_function_dataset(seed=1337)
    labels = [label for _, label in task.train]
    subset, = label_budget_subsets(labels, [0.05], seed=1337)
    counts = np.bincount(np.array(labels)[subset], minlength=task.num_classes)
    assert len(subset) == round(0.05 * len(labels)) and counts.max() - counts.min() <= 1


@pytest.mark.parametrize("labels, budgets, match", [
    ([], [0.5], "non-empty"), ([[0, 1]], [0.5], "non-empty"),
    ([0, 1], [0.0], r"fraction in \(0, 1\], got 0.0"), ([0, 1], [1.5], "got 1.5")])
def test_bad_arguments_are_named(labels, budgets, match):
    with pytest.raises(ValueError, match=match):
        label_budget_subsets(labels, budgets)
