"""CompositeSettings.validate: every bad value is reported with its field name."""

import pytest
import yaml

from augment.settings import CompositeSettings


def test_defaults_and_a_full_yaml_section_are_valid():
    CompositeSettings().validate()
    section = yaml.safe_load(
        """
        feather_px: 3
        erode_px: 1
        dilate_px: 2
        harmonize: 0.5
        jitter_px: 4
        background_transforms:
          - RandomBrightnessContrast: {brightness_limit: 0.3, p: 1.0}
          - HorizontalFlip: {p: 0.5}
          - GaussianBlur: null
        robot_transforms:
          - HueSaturationValue: {hue_shift_limit: 10}
        protect:
          "*": [{box: [0.0, 0.6, 1.0, 1.0]}]
          image_0: [{polygon: [[0.1, 0.1], [0.3, 0.1], [0.2, 0.3]]}]
        protect_feature: "{camera}_protect_mask"
        """
    )
    CompositeSettings(**section).validate()


@pytest.mark.parametrize(
    "changes, field",
    [
        ({"feather_px": -1.0}, "composite.feather_px"),
        ({"erode_px": -2}, "composite.erode_px"),
        ({"dilate_px": 1.5}, "composite.dilate_px"),
        ({"jitter_px": -1}, "composite.jitter_px"),
        ({"harmonize": 1.5}, "composite.harmonize"),
        ({"background_transforms": [{"NoSuchTransform": {}}]}, r"composite.background_transforms\[0\]"),
        (
            {"background_transforms": [{"Blur": {}}, {"RandomBrightnessContrast": {"no_such_arg": 1}}]},
            r"composite.background_transforms\[1\].RandomBrightnessContrast",
        ),
        (
            {"background_transforms": [{"RandomBrightnessContrast": {"brightness_limit": "much"}}]},
            r"composite.background_transforms\[0\].RandomBrightnessContrast",
        ),
        ({"background_transforms": [{"Blur": {}, "CLAHE": {}}]}, r"composite.background_transforms\[0\]"),
        ({"background_transforms": ["Blur"]}, r"composite.background_transforms\[0\]"),
        ({"robot_transforms": [{"HorizontalFlip": {"p": 1.0}}]}, r"composite.robot_transforms\[0\].*moves pixels"),
        ({"protect": {"*": [{"box": [0.2, 0.0, 0.1, 1.0]}]}}, r"composite.protect.\*\[0\].box"),
        ({"protect": {"image_0": [{"box": [0.0, 0.0, 1.0]}]}}, r"composite.protect.image_0\[0\].box"),
        ({"protect": {"image_0": [{"box": [0.0, 0.0, 2.0, 1.0]}]}}, r"composite.protect.image_0\[0\].box"),
        ({"protect": {"image_0": [{"polygon": [[0.1, 0.1], [0.2, 0.2]]}]}}, r"composite.protect.image_0\[0\].polygon"),
        ({"protect": {"image_0": [{"polygon": [[0.1, 0.1], [0.2], [0.3, 0.3]]}]}}, r"composite.protect.image_0\[0\].polygon"),
        ({"protect": {"image_0": [{"circle": [0.5, 0.5, 0.1]}]}}, r"composite.protect.image_0\[0\]"),
        ({"protect": {"image_0": {"box": [0, 0, 1, 1]}}}, "composite.protect.image_0"),
        ({"protect_feature": "{camera}_{step}_mask"}, "composite.protect_feature"),
    ],
)
def test_bad_values_name_their_field(changes, field):
    with pytest.raises(ValueError, match=field):
        CompositeSettings(**changes).validate()
