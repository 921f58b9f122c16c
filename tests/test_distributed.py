"""smoke_tests.distributed's judgement of what every rank gathered (no torch needed): every rank's sums, every
node's own figures, and who to name when something is wrong."""

import math

import pytest

from smoke_tests import distributed


def rank(r: int, node: int, host: str, world_got=None, node_got=None, ranks=4, per_node=2) -> dict:
    """What one rank gathers: per size its smallest and largest element; *_got=(min, max) makes them wrong."""
    first = node * per_node
    world_expected, node_expected = ranks * (ranks + 1) // 2, sum(range(first + 1, first + per_node + 1))
    world_min, world_max = world_got or (world_expected, world_expected)
    node_min, node_max = node_got or (node_expected, node_expected)
    return {"rank": r, "node": node, "host": host, "address": f"10.0.0.{node + 1}",
            "world": [{"size_mib": 4, "time_us": 1000.0, "algbw_gbs": 4.19, "busbw_gbs": 6.29,
                       "min": world_min, "max": world_max, "expected": world_expected}],
            "node_rows": [{"size_mib": 4, "time_us": 500.0, "algbw_gbs": 8.39, "busbw_gbs": 8.39,
                           "min": node_min, "max": node_max, "expected": node_expected}]}


def picture(**wrong) -> dict:
    everyone = [rank(0, 0, "a"), rank(1, 0, "a"), rank(2, 1, "b"), rank(3, 1, "b")]
    for r, (key, value) in wrong.items():
        everyone[int(r[1:])] = rank(int(r[1:]), int(r[1:]) // 2, "ab"[int(r[1:]) // 2], **{key: value})
    return distributed._assemble(everyone, "gloo", 2)


def test_a_clean_run_passes_with_every_node():
    result = distributed.judge(picture())
    assert result.status == "PASS", result.reason
    assert result.reason.startswith("2 nodes [a (10.0.0.1), b (10.0.0.2)], 4 rank(s) (gloo), sums exact from 4 to 4 MiB")
    figures = result.figures
    assert (figures["world_size"], figures["nodes"], figures["ranks_per_node"]) == (4, 2, 2)
    assert [n["host"] for n in figures["per_node"]] == ["a", "b"] and figures["per_node"][1]["sizes"][0]["expected"] == 7
    assert result.gpu is False


@pytest.mark.parametrize("wrong_rank", ["r0", "r3"])
@pytest.mark.parametrize("got, says", [((9.0, 10.0), "gave 9 where the exact sum is 10 (elements from 9 to 10)"),
                                       ((10.0, 11.0), "gave 11 where the exact sum is 10 (elements from 10 to 11)"),
                                       ((math.nan, math.nan), "gave nan where the exact sum is 10 (elements from nan to nan)")])
def test_one_ranks_wrong_element_fails_the_world(wrong_rank, got, says):
    result = distributed.judge(picture(**{wrong_rank: ("world_got", got)}))
    assert result.status == "FAIL" and result.reason.endswith("4 MiB: all-reduce " + says), result.reason


def test_a_wrong_sum_within_a_node_names_the_node():
    result = distributed.judge(picture(r2=("node_got", (6.0, 7.0))))
    assert result.status == "FAIL"
    assert result.reason.endswith("node 1 (b): 4 MiB within the node: all-reduce gave 6 where the exact sum is 7 "
                                  "(elements from 6 to 7)"), result.reason


def test_one_rank_per_node_says_the_figures_are_the_fabrics():
    everyone = [{**rank(0, 0, "a", ranks=2, per_node=1), "node_rows": []},
                {**rank(1, 1, "b", ranks=2, per_node=1), "node_rows": []}]
    result = distributed.judge(distributed._assemble(everyone, "gloo", 1))
    assert result.status == "PASS" and "the figures are the fabric's" in result.warnings[0]


def test_nccl_results_are_gpu_checks():
    assert distributed.judge({**picture(), "backend": "nccl"}).gpu is True


@pytest.mark.parametrize("world, factor", [(2, 1.0), (4, 1.5), (8, 1.75)])
def test_busbw_is_nccl_tests_definition(world, factor):
    row = distributed._row(256, 0.1, world, 3.0, 3.0, 3)
    assert row["algbw_gbs"] == 2.68  # 256 MiB in 0.1 s
    assert row["busbw_gbs"] == round(2.68435456 * factor, 2)
    assert distributed._row(256, 0.1, 1, 1.0, 1.0, 1)["busbw_gbs"] is None


def test_outside_torchrun_it_says_how_to_start_it(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "GROUP_RANK"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(SystemExit, match="start it with torchrun"):
        distributed.torchrun_env()
