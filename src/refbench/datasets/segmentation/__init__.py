"""Semantic segmentation releases in their official layouts: ADE20K SceneParsing
(`ade20k.py`) and Cityscapes fine annotations (`cityscapes.py`), with what they share
(`common.py`: the columns, label-map probing, the scene painter of the synthesizers).

Images and annotations stay on disk (the cache keeps their paths); label values are
checked where they are decoded (`refbench datasets check`, and scoring)."""
