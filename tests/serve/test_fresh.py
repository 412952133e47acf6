from streamrec.serve.fresh import FreshConfig, blend, fresh_candidates

RANKED = [("a", 3.0, ("sasrec",)), ("b", 2.0, ("pop",)), ("c", 1.0, ("mf",)), ("d", 0.5, ("mf",))]


def test_only_unknown_items_with_enough_co_occurrences_are_fresh_candidates() -> None:
    neighbours = [[("known", 9), ("n1", 2), ("n2", 1)], [("n2", 1), ("seen", 5), ("rare", 1)]]
    assert fresh_candidates(neighbours, {"known": 1}, {"seen"}, FreshConfig(min_count=2)) == [("n1", 2.0), ("n2", 2.0)]


def test_fresh_items_never_take_the_top_and_keep_the_list_sorted() -> None:
    out = blend(RANKED, [("n1", 5.0), ("n2", 3.0)], 4, FreshConfig(max_share=0.5))
    assert [i for i, _, _ in out] == ["a", "n1", "b", "n2"]
    assert [s for _, s, _ in out] == sorted((s for _, s, _ in out), reverse=True)
    assert out[1][2] == ("cooc",)


def test_the_share_is_capped_but_one_slot_is_always_open() -> None:
    out = blend(RANKED, [("n1", 5.0), ("n2", 3.0), ("n3", 3.0)], 4, FreshConfig(max_share=0.2))
    assert [i for i, _, _ in out] == ["a", "n1", "b", "c"]


def test_fresh_items_fill_a_short_list_and_nothing_fresh_changes_nothing() -> None:
    assert [i for i, _, _ in blend(RANKED[:1], [("n1", 5.0), ("n2", 3.0)], 3, FreshConfig(max_share=0.1))] == \
        ["a", "n1", "n2"]
    assert blend(RANKED, [], 3) == RANKED[:3]
    cold = blend([], [("n1", 5.0), ("n2", 3.0)], 2)
    assert [i for i, _, _ in cold] == ["n1", "n2"] and cold[0][1] > cold[1][1]
