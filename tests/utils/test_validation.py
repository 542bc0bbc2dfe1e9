"""The numeric-input checks every sampling CLI runs first: one line per bad value, naming the flag and its range."""
import pytest

from utils.validation import InputErrors, Limit, check_numbers, number_problem


def test_each_kind_of_bad_number_gets_its_line():
    whole = Limit(1, 10, whole=True, why="a reason")
    assert number_problem("--n", None, whole) is None  # the default
    assert number_problem("--n", 10, whole) is None
    assert number_problem("--n", float("nan"), whole) == "--n must be a finite number, got nan"
    assert number_problem("--n", 2.5, whole) == "--n must be a whole number, got 2.5"
    assert number_problem("--n", 0, whole) == "--n must be at least 1, got 0"
    assert number_problem("--n", 11, whole) == "--n must be at most 10 (a reason), got 11"
    assert number_problem("--n", True, whole) == "--n must be a number, got True"
    assert number_problem("--x", float("-inf"), Limit()) == "--x must be a finite number, got -inf"


def test_every_problem_is_reported_at_once():
    with pytest.raises(InputErrors) as e:
        check_numbers({"--a": 0, "--b": 1.0, "--c": float("inf")}, {"--a": Limit(1), "--b": Limit(), "--c": Limit()})
    assert e.value.problems == ["--a must be at least 1, got 0", "--c must be a finite number, got inf"]
    assert isinstance(e.value, ValueError) and str(e.value) == "\n".join(e.value.problems)
