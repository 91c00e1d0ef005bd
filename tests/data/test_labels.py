import pandas as pd

from rxlib.data.labels import LABEL_TABLE_PATH, derive_kaggle2023_label_table, kaggle2023_label_map, well_type_of_class


def test_shipped_label_table_matches_the_real_releases(real_rxrx1):
    derived = derive_kaggle2023_label_table(real_rxrx1 / "kaggle-2019", real_rxrx1 / "kaggle-2023")
    shipped = pd.read_csv(LABEL_TABLE_PATH)
    pd.testing.assert_frame_equal(derived.reset_index(drop=True), shipped, check_dtype=False)


def test_label_map_is_a_bijection_onto_1139_classes():
    mapping = kaggle2023_label_map()
    assert sorted(mapping.values()) == list(range(1139))
    assert mapping["UNTREATED"] == 1138


def test_well_type_of_class():
    assert [well_type_of_class(c) for c in (0, 1107, 1108, 1137, 1138)] == [
        "treatment", "treatment", "positive_control", "positive_control", "negative_control"]
