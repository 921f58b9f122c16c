"""TAG= as every command reads it (Matrix.select): one tag, all, or a,b,c; `make matrix` runs every tag by default."""

import pytest

from builder.matrix.types import MatrixError
from builder.matrix_run import plan


def test_tags_run_in_matrix_order_whatever_order_they_are_given(shipped):
    specs = shipped.select("v2.15-cu132, v2.6-cu124,v2.6-cu124")
    assert [s.tag for s in specs] == ["v2.6-cu124", "v2.15-cu132"]


@pytest.mark.parametrize("value", [None, "", "all"])
def test_all_is_the_default(shipped, value):
    assert [s.tag for s in plan.asked(shipped, value)] == list(shipped.specs)


def test_every_unknown_tag_is_named_with_its_help(shipped):
    with pytest.raises(MatrixError) as e:
        shipped.select("v2.6-cu121,v2.6-cu124,v9.9-cu999")
    text = str(e.value)
    assert "'v2.6-cu121' is not a tag" in text and "v2.5-cu121" in text
    assert "'v9.9-cu999' is not a tag" in text


def test_an_empty_list_is_refused(shipped):
    with pytest.raises(MatrixError, match="comma-separated list of tags"):
        shipped.select(",")


@pytest.mark.parametrize("value", ["all,v2.6-cu124", "v2.6-cu124, all", "all,all", "all,nope"])
def test_all_mixed_with_tag_names_is_refused_not_read_as_all(shipped, value):
    with pytest.raises(MatrixError) as refused:
        shipped.select(value)
    (problem,) = refused.value.problems
    assert problem.where == "TAG"
    assert "mixes 'all' with tag names; give TAG=all alone" in problem.message
    assert [s.tag for s in shipped.select("all,")] == list(shipped.specs)  # a stray comma names nothing more


def test_all_mixed_with_tags_says_which_tags_to_give_instead(shipped):
    with pytest.raises(MatrixError) as refused:
        shipped.select("all,v2.6-cu124, v2.5-cu121")
    assert refused.value.problems[0].message == (
        "'all,v2.6-cu124, v2.5-cu121' mixes 'all' with tag names; give TAG=all alone for every tag, or only the tags "
        "you want: 'v2.6-cu124,v2.5-cu121'")


def test_a_list_of_nothing_says_what_to_give(shipped):
    with pytest.raises(MatrixError) as refused:
        shipped.select(", ,")
    assert [(p.where, p.message) for p in refused.value.problems] == [("TAG", "give a comma-separated list of tags, or all")]
