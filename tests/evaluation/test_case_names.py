from softlabels.evaluation.case_names import CaseNames


def test_case_names_are_unique_in_loader_order_even_against_given_names():
    names = CaseNames()
    first = names({"case": ["p1", "p1_1", "p1"]}, 3)  # the third "p1" skips the given "p1_1"
    assert first == ["p1", "p1_1", "p1_2"]
    assert names({"case": ("p2",)}, 1) == ["p2"] and names({"image": None}, 2) == ["case_00004", "case_00005"]
