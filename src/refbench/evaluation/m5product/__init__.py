"""M5Product evaluation: SCALE's retrieval metric, top-1 accuracy, clustering NMI and purity.

- `refbench.evaluation.m5product.retrieval`: `m5product_retrieval`, the SCALE_code
  `evaluate_unit_v2.py` / M5Product_toolkit `evaluate_unit.py` semantics over ranked lists
  or over per-modality [CLS] embeddings ranked like `retrieval_unit_id_list*.py`;
- `refbench.evaluation.m5product.labels`: `m5product_classification` (top-1 accuracy, as
  SCALE's `train_cls.py` prints it) and `m5product_clustering` (NMI and purity, defined
  there: no official code exists).

Every official key is in percent, as the SCALE scripts print and the benchmark page lists
them.
"""

from refbench.evaluation.m5product.labels import (
    M5ProductClassification,
    M5ProductClustering,
    accuracy,
    nmi,
    purity,
)
from refbench.evaluation.m5product.retrieval import (
    MAX_TOPK,
    TOPKS,
    GalleryLabels,
    M5ProductRetrieval,
    M5Query,
    QueryEmbedding,
    SubmittedGallery,
    evaluate_rankings,
    rank_embeddings,
)

__all__ = ["MAX_TOPK", "TOPKS", "GalleryLabels", "M5ProductClassification",
           "M5ProductClustering", "M5ProductRetrieval", "M5Query", "QueryEmbedding",
           "SubmittedGallery", "accuracy", "evaluate_rankings", "nmi", "purity",
           "rank_embeddings"]
