"""NASOA (Xu et al., ICCV 2021), re-implemented: a training-efficient model zoo searched over
a joint block + macro space, an online fine-tuning schedule generator, and the
fine-tune-under-budget benchmark.

No official code is public; the search space follows vega's DNet encoding (its closest
public relative, `encoding.py`), the rest follows the paper's description:

- `encoding`   the `BLOCK_CHANNEL_MACRO` code: parser, validator, samplers, mutations
- `network`    a plain-PyTorch network for any code (vega's DNet, layer for layer)
- `tasks`      tasks in the supported image layouts and graded synthetic tasks
- `zoo`        the accuracy / training-time Pareto search and the zoo folder
- `finetune`   fine-tuning a zoo member under a seconds or steps budget
- `generators` online (NASOA), random, hyperband, bohb (optuna), largest-default
- `benchmark`  the task sequence, result.json per generator, the plot (`plot`)
- `search`     `refbench search nasoa-zoo` and `refbench search nasoa-finetune`
"""
