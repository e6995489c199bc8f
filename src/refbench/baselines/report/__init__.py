"""Radiology report generation: a model looks at a study's images (X-ray views or a CT
volume) and writes its findings; the benchmark scores the reports with the coco-caption
metrics and the predicted terms with precision / recall / F1 / AUC.

Shared parts of the domain: what a baseline reads from a prepared split (`inputs.py`:
image stacks, terms) and the image encoder (`vision.py`: a ResNet in plain PyTorch whose
grid cells are the regions). The floors every table needs are `floors.py`
(`most-frequent-report`, `nn-report`). One subpackage per model family:
`medical_vlbert/` (Medical-VLBERT, Liu et al., 2021), with its recipes in
`medical_vlbert/recipes/`. The domain's `refbench demo` job is in `demo_jobs.py`.
"""
