"""minisegnet/data/labels.py: mask values -> classes, and the checks that refuse labels that would train nothing."""

import numpy as np
import pytest

from minisegnet.data.labels import count_classes, map_mask_values, parse_mask_values


@pytest.mark.parametrize(
    "labels, kw, message",
    [
        ([0, 1, 2, 200], {}, "label 200, far beyond the others .*--mask-values 0,1,2,200.*--num-classes 201"),
        ([0, 0, 0, 0], {}, "no foreground label"),
        ([0, 1, 2, 3], {"num_classes": 3}, "label 3, outside --num-classes 3"),
        ([0, 1, 40000, 2], {}, "more than 256 classes"),
        ([0, 1, 2, 7], {"values": [0, 1, 2]}, "the value 7, which --mask-values"),
    ],
)
def test_labels_that_would_train_a_useless_model_are_one_line_errors(labels, kw, message):
    masks = np.array(labels).reshape(1, 2, 2)
    with pytest.raises(ValueError, match=message):
        if "values" in kw:
            map_mask_values(masks, kw["values"], "x")
        else:
            count_classes(masks, "x", kw.get("num_classes", 0))


def test_explicit_num_classes_and_mask_values_are_accepted():
    assert count_classes(np.array([[0, 1], [2, 200]]), "x", num_classes=201) == 201
    masks = map_mask_values(np.array([[0, 50], [255, 100]]), [0, 100, 50], "x")
    np.testing.assert_array_equal(masks, [[0, 2], [255, 1]])  # 255 not listed: still the ignore label
    with pytest.raises(ValueError, match="--mask-values '0,a'"):
        parse_mask_values("0,a")


def test_mask_values_are_read_from_text_or_a_list():
    assert parse_mask_values("") == [] and parse_mask_values(" 0, 255 ") == [0, 255]
    assert parse_mask_values([0, 128, 255]) == [0, 128, 255]
    for bad in ("5", "0,0", [3]):
        with pytest.raises(ValueError, match="two or more different values"):
            parse_mask_values(bad)


def test_counting_takes_the_values_a_mask_holds_as_well_as_the_masks():
    assert count_classes(np.array([0, 1, 2, 255]), "x") == 3  # the distinct values, as a folder scan gives them
    with pytest.raises(ValueError, match=r"no foreground label \(values: 0, 255\); black-and-white masks\? "):
        count_classes(np.array([0, 255]), "x")
    with pytest.raises(ValueError, match="label 65535, outside --num-classes 2"):
        count_classes(np.array([0, 1, 65535]), "x", num_classes=2)
